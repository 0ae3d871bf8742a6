"""Facts about the real evidence in the ``tee_evidence`` fixture (see its README), shared by tests."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

from sharedml.tee.attestation import Evidence

BLOCKY_PCR0 = (
    "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a"
)
SGX_MRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
SGX_MRSIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
TDX_MRTD = (
    "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
)
SNP_MEASUREMENT = (
    "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
)
BLOCKY_AT = dt.datetime(2024, 9, 7, 14, 37, 40, tzinfo=dt.UTC)
DEBUG_AT = dt.datetime(2024, 9, 7, 14, 38, 7, tzinfo=dt.UTC)
ETERNIS_AT = dt.datetime(2024, 9, 9, 19, 49, 13, tzinfo=dt.UTC)
SGX_AT = dt.datetime.fromtimestamp(1752919277, dt.UTC)
TDX_AT = dt.datetime.fromtimestamp(1752919234, dt.UTC)
OUTDATED_AT = dt.datetime.fromtimestamp(1774003274, dt.UTC)
SNP_AT = dt.datetime(2022, 9, 24, 1, 0, tzinfo=dt.UTC)
#: The blocky documents' nonce, user_data and public_key: 1024 bytes of 0x01 each.
BLOCKY_FIELD = b"\x01" * 1024


def nitro_document(path: Path) -> bytes:
    return base64.b64decode(path.read_text())


def nitro(path: Path) -> Evidence:
    return Evidence("nitro", nitro_document(path))


def dcap(quote: Path, collateral: Path) -> Evidence:
    return Evidence("dcap", quote.read_bytes(), collateral.read_bytes())


def snp_evidence(tee_evidence: Path) -> Evidence:
    return Evidence("snp", (tee_evidence / "snp/attestation.bin").read_bytes(),
                    (tee_evidence / "snp/vcek.testcer").read_bytes())
