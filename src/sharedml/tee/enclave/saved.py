"""Registered TEE models inside the enclave: sealed after a run, opened for a later job's ``predict``.

A model a ``scheme: tee`` job trains never leaves the enclave in clear except
to a recipient every owner named (:meth:`~.runtime.Enclave.release`). For
later batch scoring it leaves once more, sealed to the enclave's *sealing
identity* (:mod:`.sealing`: platform seal secret, signer, product, svn):

1. :func:`seal_models` — after a run, each trained model is sealed under the
   name ``model``; the host keeps the blob and the model registry its
   SHA-256 (the version's ``enclave`` fingerprint), never the parameters;
2. :func:`open_models` — a later job's ``predict {model: uid}`` step carries
   the registered fingerprint (resolved outside, :mod:`sharedml.tee.saved`) and
   the run request the blob; the enclave checks the blob's hash against the
   fingerprint (the version the registry names, not another the host
   substitutes) and unseals it. A blob sealed by another signer, product or
   platform does not open: the job is refused naming the step and the remedy.

Reveals: to the host, each sealed model's size and hash (as the registry's
fingerprint). A model sealed here can be scored by any later enclave of the
same signer and product at the same or a newer svn, on rows whose owners'
policies allow ``predict``; its scores are released only as those policies say.
Security model: as the enclave's (:mod:`.runtime`).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from sharedml.errors import PolicyDenied, ProtocolAbort
from sharedml.tee.enclave.sealing import SealedStore
from sharedml.tee.model import ReleasedModel

NAME = "model"  # the sealed blob's name: one kind of sealed thing, whatever the job
FINGERPRINT = "enclave"  # the registry's fingerprint key of a TEE version (its only "part")


def fingerprint(blob: bytes) -> str:
    """The registry's fingerprint of a sealed model: SHA-256 of the blob."""
    return hashlib.sha256(blob).hexdigest()


def seal_models(sealer: SealedStore | None, models: dict[str, ReleasedModel]) -> dict[str, str]:
    """Each step's model sealed to this enclave's identity (base64), or nothing without seal keys."""
    if sealer is None:
        return {}
    return {step: base64.b64encode(sealer.seal(NAME, m.to_bytes())).decode() for step, m in models.items()}


def wanted(parsed: list[tuple[str, str, Any]]) -> dict[str, tuple[str, str]]:
    """``uid -> (step id, registered fingerprint)`` of every ``predict {model:}`` step."""
    out = {}
    for step_id, component, params in parsed:
        if component == "predict" and getattr(params, "model", None):
            out[str(params.model)] = (step_id, str((params.fingerprints or {}).get(FINGERPRINT, "")))
    return out


def open_models(sealer: SealedStore | None, parsed: list[tuple[str, str, Any]],
                blobs: dict[str, str]) -> dict[str, ReleasedModel]:
    """The saved models the steps name, unsealed here after their fingerprints are checked."""
    out: dict[str, ReleasedModel] = {}
    for uid, (step_id, expected) in wanted(parsed).items():
        try:
            blob = base64.b64decode(blobs[uid], validate=True)
        except (KeyError, ValueError):
            raise ProtocolAbort(f"the run request carries no sealed blob of model {uid}", step=step_id) from None
        out[uid] = open_blob(sealer, uid, blob, expected, step_id)
    return out


def open_blob(sealer: SealedStore | None, uid: str, blob: bytes, expected: str, step: str) -> ReleasedModel:
    """One registered model: its blob checked against the registered fingerprint, then unsealed here
    (batch ``predict {model:}`` and online scoring, :mod:`.serve`)."""
    if sealer is None:
        raise PolicyDenied("this enclave has no sealing keys, so it cannot open a saved model",
                           step=step, remedy="score with an enclave whose attester seals (sim, gramine)")
    if not expected or fingerprint(blob) != expected:
        raise PolicyDenied(f"the sealed blob of model {uid} is not the registered version (fingerprint "
                           "differs)", step=step, remedy="resolve the model again from the registry")
    try:
        return ReleasedModel.from_bytes(sealer.unseal(blob, NAME))
    except (ProtocolAbort, PolicyDenied) as exc:
        raise PolicyDenied(f"model {uid} was sealed for another enclave identity and does not open here "
                           f"({exc.args[0] if exc.args else exc})", step=step,
                           remedy="score it on the build that trained it (same signer and product, same or "
                           "newer svn, same platform), or train it again on this one") from None
