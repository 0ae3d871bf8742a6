"""The scoring enclave's protocol in process (tee/enclave/serve.py): real AES-GCM seal keys, no processes.

The enclave combines a label holder's and a partner's raw columns only when
each names the loaded version's fingerprint, the same ids in the same order,
and the partner consented to score *for that caller*; each party's columns
are qualified by the party the call came from, so no party can supply
another's. Scores equal the model's own ``predict`` on the joined rows.
"""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest

from sharedml.errors import DataError, PolicyDenied, ProtocolAbort
from sharedml.tee.enclave import saved
from sharedml.tee.enclave.sealing import SealedStore
from sharedml.tee.enclave.serve import ScoringEnclave, encode_matrix
from sharedml.tee.model import ReleasedModel

MODEL = ReleasedModel("logistic_regression", ["bank.a", "bank.b", "shop.c"],
                      {"mean": [0.5, -1.0, 2.0], "scale": [2.0, 1.0, 4.0], "coef": [0.3, -0.7, 1.1],
                       "intercept": -0.2})
IDS = ["7", "8", "9"]
BANK = np.array([[1.0, 2.0], [0.0, -1.0], [3.5, 0.25]])
SHOP = np.array([[4.0, 9.0], [-2.0, 1.0], [0.5, 0.0]])  # c, and a column the model does not use


def _enclave() -> tuple[ScoringEnclave, str]:
    sealer = SealedStore(lambda svn: b"\x05" * 32, 1)
    blob = base64.b64decode(saved.seal_models(sealer, {"train": MODEL})["train"])
    enclave = ScoringEnclave(sealer)
    info = enclave.load("bank", {"version": "v1", "fingerprint": saved.fingerprint(blob)}, blob)
    assert info["parties"] == ["bank", "shop"] and info["columns"] == ["a", "b"]
    return enclave, saved.fingerprint(blob)


def _shop(fp: str, batch: str = "b" * 32, to: str = "bank", ids: list[str] = IDS) -> tuple[dict, bytes]:
    return ({"version": "v1", "fingerprint": fp, "batch": batch, "for": to, "ids": ids, "columns": ["c", "d"]},
            encode_matrix(SHOP))


def _score(enclave: ScoringEnclave, fp: str, caller: str = "bank", ids: list[str] = IDS) -> np.ndarray:
    return enclave.score(caller, {"version": "v1", "fingerprint": fp, "batch": "b" * 32, "ids": ids,
                                  "columns": ["a", "b"]}, encode_matrix(BANK))


def test_scores_equal_the_models_predict_on_the_joined_rows() -> None:
    enclave, fp = _enclave()
    enclave.features("shop", *_shop(fp))
    joined = pd.DataFrame({"bank.a": BANK[:, 0], "bank.b": BANK[:, 1], "shop.c": SHOP[:, 0]})
    np.testing.assert_allclose(_score(enclave, fp), MODEL.predict(joined), rtol=0, atol=1e-15)
    assert enclave.status()["pending"] == 0  # the contribution is dropped once used


def test_a_missing_or_misdirected_contribution_names_the_party() -> None:
    enclave, fp = _enclave()
    enclave.features("shop", *_shop(fp, to="mallory"))  # consented for another label holder only
    with pytest.raises(ProtocolAbort, match="did not reach the enclave") as missing:
        _score(enclave, fp)
    assert missing.value.party == "shop"
    enclave.features("shop", *_shop(fp, ids=["7", "9", "8"]))
    with pytest.raises(ProtocolAbort, match="other ids") as other:
        _score(enclave, fp)
    assert other.value.party == "shop"


def test_a_party_cannot_supply_another_partys_columns_or_another_version() -> None:
    enclave, fp = _enclave()
    header, body = _shop(fp)
    enclave.features("bank", {**header, "columns": ["c", "d"]}, body)  # bank's "c" is bank.c, not shop.c
    with pytest.raises(ProtocolAbort, match="'shop'"):
        enclave.score("bank", {"version": "v1", "fingerprint": fp, "batch": "b" * 32, "ids": IDS,
                               "columns": ["a", "b"]}, encode_matrix(BANK))
    with pytest.raises(PolicyDenied, match="another fingerprint"):
        enclave.features("shop", *_shop("0" * 64))
    with pytest.raises(DataError, match="do not match"):
        enclave.features("shop", header, body[:-8])
    enclave.features("shop", *_shop(fp))
    with pytest.raises(DataError, match="column 'b'") as lacking:
        enclave.score("bank", {"version": "v1", "fingerprint": fp, "batch": "b" * 32, "ids": IDS,
                               "columns": ["a"]}, encode_matrix(BANK[:, :1]))
    assert lacking.value.party == "bank"
