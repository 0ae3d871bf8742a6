"""Enclave images: render the Gramine manifest, and read the measurement a build produced.

A provider pins what it will send data to. These functions turn the output
of each runtime's own build tool into the reference values a
:class:`~sharedml.tee.attestation.Policy` takes (``deploy/tee/README.md``
says which command produces each input):

- :func:`sim_reference` — the simulator's measurement of this installation's
  enclave code (what :func:`~sharedml.tee.manager.build_manifest` signs);
- :func:`sigstruct_reference` — Gramine/SGX: the SIGSTRUCT that
  ``gramine-sgx-sign`` writes (``*.sig``); its RSA-3072 signature is checked,
  MRSIGNER is SHA-256 of the signer's modulus (Intel SDM vol. 3D §38.13);
- :func:`nitro_reference` — Nitro: the JSON ``nitro-cli build-enclave``
  prints (PCR0 = the image, PCR8 = the signing certificate if signed);
- :func:`render_gramine_manifest` — the manifest template with Jinja2, as
  ``gramine-manifest`` does, and the checks a release must pass before it is
  signed (no debug, DCAP attestation, the attester fixed in the measured argv).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sharedml.errors import ConfigError
from sharedml.tee.attestation.base import Attester, Backend

SIGSTRUCT_SIZE = 1808
_HEADER = bytes.fromhex("06000000e10000000000010000000000")


def sim_reference(svn: int = 1) -> dict[str, Any]:
    """The simulator's measurement of this installation's enclave code."""
    from sharedml.tee.attestation.sim import measure
    from sharedml.tee.manager import ENCLAVE_PRODUCT_ID, enclave_code

    root, files = enclave_code()
    return {"backend": "sim", "measurements": [measure(root, files, {"runtime": "sim"}).hex()],
            "product_id": ENCLAVE_PRODUCT_ID, "min_svn": svn}


def sigstruct_reference(data: bytes) -> dict[str, Any]:
    """MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN and DEBUG from a verified SIGSTRUCT."""
    if len(data) != SIGSTRUCT_SIZE or data[:16] != _HEADER:
        raise ConfigError("not an SGX SIGSTRUCT (gramine-sgx-sign's .sig file)", step="measure")
    modulus, exponent = data[128:512], int.from_bytes(data[512:516], "little")
    key = rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "little")).public_key()
    signature = int.from_bytes(data[516:900], "little").to_bytes(384, "big")
    try:
        key.verify(signature, data[:128] + data[900:1028], padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise ConfigError("SIGSTRUCT signature does not verify", step="measure",
                          remedy="re-run gramine-sgx-sign; the file was altered") from None
    attributes = int.from_bytes(data[928:936], "little")
    return {
        "backend": "dcap",
        "measurements": [data[960:992].hex()],
        "signer": hashlib.sha256(modulus).hexdigest(),
        "product_id": int.from_bytes(data[1024:1026], "little"),
        "min_svn": int.from_bytes(data[1026:1028], "little"),
        "debug": bool(attributes & 0x2),
    }


def nitro_reference(build_output: str) -> dict[str, Any]:
    """PCR0 (and PCR8 when signed) from ``nitro-cli build-enclave``'s JSON output."""
    try:
        measurements = json.loads(build_output)["Measurements"]
        pcr0 = str(measurements["PCR0"]).lower()
    except (ValueError, KeyError, TypeError):
        raise ConfigError("not the JSON nitro-cli build-enclave prints", step="measure") from None
    if len(pcr0) != 96 or not all(c in "0123456789abcdef" for c in pcr0) or not pcr0.strip("0"):
        raise ConfigError(f"PCR0 {pcr0[:16]}… is not a SHA-384 image measurement", step="measure")
    reference: dict[str, Any] = {"backend": "nitro", "measurements": [pcr0]}
    if measurements.get("PCR8"):
        reference["signer"] = str(measurements["PCR8"]).lower()
    return reference


def render_gramine_manifest(template: str | Path, variables: dict[str, Any]) -> str:
    """Render a manifest template with Jinja2 (as gramine-manifest does) and check it."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    try:
        text = env.from_string(Path(template).read_text()).render(**variables)
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"manifest template needs {exc.message}", step="build",
                          remedy="pass it with -D name=value") from None
    check_gramine_manifest(text)
    return text


def check_gramine_manifest(text: str) -> dict[str, Any]:
    """Refuse a manifest a provider must not pin: debug, no DCAP, attester not fixed."""
    manifest = tomllib.loads(text)
    sgx = manifest.get("sgx", {})
    problems = []
    if sgx.get("debug", True):
        problems.append("sgx.debug must be false")
    if sgx.get("remote_attestation") != "dcap":
        problems.append('sgx.remote_attestation must be "dcap"')
    argv = manifest.get("loader", {}).get("argv", [])
    if "--attester" not in argv or argv[argv.index("--attester") + 1 : argv.index("--attester") + 2] != ["gramine"]:
        problems.append("loader.argv must fix --attester gramine")
    if manifest.get("loader", {}).get("insecure__use_cmdline_argv"):
        problems.append("loader.insecure__use_cmdline_argv lets the host change the argv")
    if problems:
        raise ConfigError("manifest not fit for release: " + "; ".join(problems), step="build")
    return manifest


def snp_reference(args: list[str]) -> dict[str, Any]:
    """SEV-SNP launch measurement by ``sev-snp-measure`` (AMD's published algorithm), when installed."""
    import shutil
    import subprocess

    tool = shutil.which("sev-snp-measure")
    if tool is None:
        raise ConfigError("sev-snp-measure is not installed", step="measure",
                          remedy="pip install sev-snp-measure, then pass --snp-arg for each of its arguments")
    done = subprocess.run([tool, "--mode", "snp", *args], capture_output=True, text=True, check=False)
    digest = done.stdout.strip().lower()
    if done.returncode != 0 or len(digest) != 96:
        raise ConfigError(f"sev-snp-measure failed: {done.stderr.strip()[-300:]}", step="measure")
    return {"backend": "snp", "measurements": [digest]}


def attestation_self_test(
    attester: Attester, *, allow_debug: bool = False, backends: list[Backend] | None = None
) -> dict[str, Any]:
    """Attest a fresh nonce and key with ``attester``; verify signature, chain, binding, freshness.

    The policy pins the measurement the evidence itself reports (this checks
    the hardware path, not which build runs); the claims are returned to print.
    """
    import secrets

    from sharedml.tee.attestation.base import Policy, Verifier

    by_name = {b.name: b for b in (backends if backends is not None else hardware_backends())}
    verifier = Verifier(by_name.values())
    nonce, key = verifier.challenge(), secrets.token_bytes(32)
    evidence = attester.attest(nonce, key)
    claims = by_name[evidence.backend].appraise(evidence, dt.datetime.now(dt.UTC))
    policy = Policy(measurements=frozenset({claims.measurement}), allow_debug=allow_debug,
                    allow_simulation=claims.simulated, tcb_statuses=frozenset({claims.tcb_status}))
    verified = verifier.verify(evidence, policy, nonce=nonce, public_key=key)
    return {**verified.summary(), "binding": "ok", "fresh": "ok"}


def hardware_backends() -> list[Backend]:
    """Verifier backends for real hardware, each with its vendor's packaged, fingerprint-checked root."""
    from sharedml.tee.attestation.dcap import DcapBackend
    from sharedml.tee.attestation.nitro import NitroBackend
    from sharedml.tee.attestation.snp import SnpBackend

    return [NitroBackend(), DcapBackend(), SnpBackend()]
