"""Steps 3 and 4 of a TEE job on the platform: run in the enclave, keep the sealed releases, destroy.

Called by :class:`~sharedml.platform.tee_jobs.TeeJobs` once every provider
has uploaded. The platform sees the metrics the owners let out, the sizes of
the releases (sealed to the label holder's key; it cannot open them), each
trained model sealed to the enclave's identity (kept and registered:
:mod:`sharedml.platform.tee_models`) and the destruction receipt, which it
checks against the key bundle it attested when it opened the job, stores and
audits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sharedml.components import jobspec
from sharedml.errors import PeerTimeout, PeerUnreachable, SharedMLError
from sharedml.platform.job_book import JobBook
from sharedml.platform.tee_models import SealedShelf
from sharedml.tee import scheme
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.enclave.wipe import verify_receipt
from sharedml.tee.envelope import KeyBundle


@dataclass
class Outcome:
    """What one attempt's run left: per-step metrics, releases, the receipt; or why it failed or was lost."""

    steps: dict[str, Any] = field(default_factory=dict)
    released: dict[str, Any] = field(default_factory=dict)
    receipt: dict[str, Any] | None = None
    failure: str | None = None
    #: The enclave stopped answering: the attempt is lost (the job tries again).
    lost: str | None = None
    #: Each train step's model sealed to the enclave's identity (base64), to keep and register.
    sealed: dict[str, str] = field(default_factory=dict)


def finish(client: EnclaveClient, book: JobBook, job_id: str, spec: dict[str, Any], tee: dict[str, Any],
           folder: Path, shelf: SealedShelf) -> Outcome:
    """Run the spec's steps in the job's enclave (with the sealed models its ``predict`` steps
    name, from ``shelf``), fetch the holder's releases, destroy the job."""
    out = Outcome()
    steps = jobspec.load(spec).parsed_steps()
    try:
        answer = client.run({"steps": scheme.wire_steps(steps), "label": tee["label"], "id": tee["id"],
                             "saved": shelf.blobs(steps)})
        out.sealed = dict(answer.get("sealed") or {})
        out.released = fetch_releases(client, tee["holder"], answer, folder)
        out.steps = {s["id"]: {"enclave": {"metrics": s["metrics"], "seconds": s.get("seconds", 0.0)}}
                     for s in answer["steps"]}
    except (PeerUnreachable, PeerTimeout) as exc:
        out.lost = f"enclave node {tee['enclave']!r} stopped answering during the run: {exc}"
    except SharedMLError as exc:
        out.failure = f"enclave run: {exc}"
    out.receipt = tee_destroy(client, book, job_id, KeyBundle.from_bytes(bytes.fromhex(tee["bundle"])))
    return out


def fetch_releases(client: EnclaveClient, holder: str, answer: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Every release the policies allow the label holder: sealed blobs kept under ``folder``."""
    out: dict[str, Any] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for what, steps in (("model", answer.get("models", [])), ("scores", answer.get("scores", []))):
        for step in steps:
            try:
                sealed = client.result(holder, what, step)
            except (PeerUnreachable, PeerTimeout):
                raise
            except SharedMLError as exc:  # not released by some owner's policy
                out[f"{what}:{step}"] = {"withheld": str(exc)[:300]}
                continue
            path = folder / f"{what}-{step}.sealed"
            path.write_bytes(sealed)
            out[f"{what}:{step}"] = {"to": holder, "bytes": len(sealed), "path": str(path)}
    return out


def tee_destroy(client: EnclaveClient, book: JobBook, job_id: str, bundle: KeyBundle) -> dict[str, Any] | None:
    """Destroy the job in the enclave; verify, store and audit the receipt (``None``: none, audited)."""
    try:
        receipt = client.call("Destroy", {}, timeout=30.0)["receipt"]
        body = verify_receipt(receipt, bundle)
    except (SharedMLError, KeyError) as exc:
        with book.tx():
            book.audit("tee.destroy.failed", job_id, {"reason": str(exc)[:500]})
        return None
    digest = hashlib.sha256(json.dumps(receipt, sort_keys=True).encode()).hexdigest()
    with book.tx():
        book.audit("tee.destroy", job_id, {"receipt_sha256": digest, "enclave": body.get("enclave"),
                                           "files_removed": body.get("files_removed")})
    return {**receipt, "sha256": digest}
