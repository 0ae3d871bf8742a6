"""The enclave runtime: keys born inside, attest, upload, train, release, destroy.

The lifecycle (§6.3, 9.4-7), enforced as a state machine — a call out of order
is refused with :class:`~sharedml.errors.ProtocolAbort`:

1. *create*: the key pair (HPKE KEM + Ed25519) is generated in this process.
2. *attest*: evidence from the quoting side binds the measurement, the
   verifier's nonce, the public key bundle and the TLS key the enclave serves
   with (:func:`~sharedml.tee.ratls.key_binding`).
3. *upload*: each provider sends an HPKE-sealed data key, its owner-signed
   policy and AEAD chunks, decrypted straight into one buffer in this
   process's memory (plaintext never touches the disk).
4. *train* (may repeat): join, split, fit, evaluate — only with algorithms and
   columns every owner's policy allows; the model is checkpointed to the
   working directory as sealed state (:mod:`.sealing`).
5. *release*: the model, HPKE-sealed to a party every owner named; metrics if
   every owner allows them.
6. *destroy*: drop keys, zero the plaintext buffers, remove the working
   directory, return a receipt signed with the attested key.

Reveals: to each named recipient, the model; to the caller, metrics (if
allowed), row counts and state. Security model: malicious host and platform;
trusted CPU vendor (or simulator root) and the measured code.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sharedml.errors import ConfigError, DataError, PolicyDenied, ProtocolAbort
from sharedml.tee.attestation.base import Attester, Evidence
from sharedml.tee.authz import DataPolicy, SignedPolicy, release_parties
from sharedml.tee.enclave import learners
from sharedml.tee.enclave.sealing import SealedStore
from sharedml.tee.envelope import (
    X25519,
    ChunkOpener,
    EnclaveKeys,
    KeyBundle,
    release_info,
    upload_info,
)
from sharedml.tee.ratls import key_binding

MAX_UPLOAD_BYTES = 2 << 30


def zeroise(buf: bytearray) -> None:
    """Overwrite a plaintext buffer in place (copies made by libraries are out of reach)."""
    if buf:
        ctypes.memset((ctypes.c_char * len(buf)).from_buffer(buf), 0, len(buf))


@dataclass
class _Upload:
    policy: DataPolicy
    opener: ChunkOpener
    plain: bytearray
    filled: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    frame: pd.DataFrame | None = None


class Enclave:
    """One enclave instance for one job."""

    def __init__(
        self,
        attester: Attester,
        workdir: str | Path,
        *,
        job: str,
        kem: str = X25519,
        owners: dict[str, bytes] | None = None,
        sealer: SealedStore | None = None,
        tls_spki_sha256: bytes = b"",
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self._tls_spki_sha256 = tls_spki_sha256
        self.job = job
        self._attester = attester
        self._keys = EnclaveKeys(kem)
        self.bundle = self._keys.bundle
        self._owners = owners
        self._sealer = sealer
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._uploads: dict[str, _Upload] = {}
        self._model: Any = None
        self._train_request: dict[str, Any] = {}
        self.metrics: dict[str, float | int] = {}
        self.state = "created"
        self.audit: list[dict[str, Any]] = [{"event": "create", "enclave": self.id, "at": time.time()}]

    # -- helpers
    def _require(self, *states: str, step: str) -> None:
        if self.state not in states:
            raise ProtocolAbort(f"{step} is not allowed in state {self.state!r}", step=step)

    def _log(self, event: str, **kw: Any) -> None:
        self.audit.append({"event": event, "at": time.time(), **kw})

    # -- 2. attest
    def attest(self, nonce: bytes) -> Evidence:
        self._require("created", "attested", "uploading", "trained", step="attest")
        evidence = self._attester.attest(nonce, key_binding(self._tls_spki_sha256, self.bundle.to_bytes()))
        if self.state == "created":
            self.state = "attested"
        self._log("attest")
        return evidence

    # -- 3. upload
    def begin_upload(self, upload_id: str, sealed_key: bytes, signed_policy: bytes, size: int) -> None:
        """Open an upload of ``size`` plaintext bytes (the buffer is allocated once, inside)."""
        self._require("attested", "uploading", step="upload")
        if upload_id in self._uploads or not upload_id.isalnum() or len(upload_id) > 64:
            raise ProtocolAbort(f"bad or repeated upload id {upload_id!r}", step="upload")
        if not 0 < size <= MAX_UPLOAD_BYTES:
            raise DataError(f"upload size {size} outside 1..{MAX_UPLOAD_BYTES}", step="upload")
        try:
            signed = SignedPolicy.from_bytes(signed_policy)
        except (ValueError, KeyError, TypeError):
            raise PolicyDenied("malformed data policy", step="upload") from None
        policy = signed.verify(job=self.job, owners=self._owners)
        if any(u.policy.owner == policy.owner for u in self._uploads.values()):
            raise ProtocolAbort(f"{policy.owner!r} already uploaded", party=policy.owner, step="upload")
        key = self._keys.open(sealed_key, upload_info(self.job, upload_id, signed.digest))
        self._uploads[upload_id] = _Upload(policy, ChunkOpener(key, upload_id.encode()), bytearray(size))
        self.state = "uploading"

    def upload_chunk(self, upload_id: str, seq: int, last: bool, ciphertext: bytes | memoryview) -> None:
        up = self._uploads.get(upload_id)
        if up is None:
            raise ProtocolAbort(f"unknown upload {upload_id!r}", step="upload")
        try:
            up.filled += up.opener.open_into(seq, last, ciphertext, memoryview(up.plain)[up.filled :])
        except ProtocolAbort:
            self.abort_upload(upload_id)
            raise
        up.digest.update(ciphertext[-16:])  # names the stream by its GCM tags (cheap; not a commitment)

    def abort_upload(self, upload_id: str) -> None:
        """Forget a failed upload: zero its buffer, remove its spool; the owner may retry."""
        up = self._uploads.pop(upload_id, None)
        if up is not None:
            zeroise(up.plain)
            self._log("upload.abort", owner=up.policy.owner)

    def finish_upload(self, upload_id: str) -> dict[str, Any]:
        up = self._uploads[upload_id]
        if not up.opener.done or up.filled != len(up.plain):
            self.abort_upload(upload_id)
            raise ProtocolAbort("upload ended before its final chunk or its declared size",
                                party=up.policy.owner, step="upload")
        try:
            frame = pq.read_table(pa.BufferReader(pa.py_buffer(up.plain))).to_pandas()
        except Exception as exc:
            self.abort_upload(upload_id)
            raise DataError(f"upload is not a Parquet table: {exc}", party=up.policy.owner, step="upload") from None
        zeroise(up.plain)
        extra = [c for c in frame.columns if c not in up.policy.columns]
        if extra:
            self.abort_upload(upload_id)
            raise PolicyDenied(f"columns {extra[:5]} are not allowed by the owner's policy",
                               party=up.policy.owner, step="upload")
        up.frame = frame
        self._log("upload", owner=up.policy.owner, rows=len(frame), chunk_tags_sha256=up.digest.hexdigest())
        return {"owner": up.policy.owner, "rows": len(frame), "columns": len(frame.columns)}

    # -- 4. train
    def train(self, request: dict[str, Any]) -> dict[str, Any]:
        self._require("uploading", "trained", step="train")
        algorithm = str(request.get("algorithm"))
        if algorithm not in learners.ALGORITHMS:
            raise ConfigError(f"unknown algorithm {algorithm!r}", step="train")
        policies = self._policies()
        for p in policies:
            if algorithm not in p.algorithms:
                raise PolicyDenied(f"{algorithm} is not allowed by the owner", party=p.owner, step="train")
        tables = {u.policy.owner: u.frame for u in self._uploads.values() if u.frame is not None}
        id_column = str(request.get("id", "id"))
        joined = learners.join(tables, id_column)
        label = str(request["label"])
        if label not in joined.columns:
            raise ConfigError(f"label {label!r} is not among the joined columns", step="train")
        y = joined[label].to_numpy()
        x = joined.drop(columns=[id_column, label])
        seed = int(request.get("seed", 0))
        train_idx, test_idx = learners.split(len(y), float(request.get("test_size", 0.0)), seed, y)
        self._model = learners.fit(algorithm, x.iloc[train_idx], y[train_idx], seed, request.get("params", {}))
        metrics: dict[str, float | int] = {"rows": len(y), "train_auc": learners.auc(y[train_idx], self._model.predict_proba(x.iloc[train_idx]))}
        if len(test_idx):
            metrics["test_auc"] = learners.auc(y[test_idx], self._model.predict_proba(x.iloc[test_idx]))
        self.metrics = metrics
        self._train_request = dict(request)
        if self._sealer is not None:
            (self.workdir / f"{algorithm}.sealed").write_bytes(self._sealer.seal(algorithm, self._model.to_bytes()))
        self.state = "trained"
        self._log("train", algorithm=algorithm, rows=len(y))
        return metrics if all(p.metrics for p in policies) else {}

    def _policies(self) -> list[DataPolicy]:
        policies = [u.policy for u in self._uploads.values() if u.frame is not None]
        if not policies:
            raise ProtocolAbort("no completed uploads", step="train")
        return policies

    # -- 5. release
    def release(self, recipient: str) -> bytes:
        self._require("trained", step="release")
        allowed = release_parties(self._policies())
        if recipient not in allowed:
            raise PolicyDenied(f"{recipient!r} is not named by every owner's release rule", step="release")
        bundle = KeyBundle.from_bytes(bytes.fromhex(allowed[recipient]))
        sealed = bundle.seal(self._model.to_bytes(), release_info(self.job, recipient))
        self._log("release", recipient=recipient, kind=self._model.kind)
        return sealed

    def status(self) -> dict[str, Any]:
        return {"enclave": self.id, "job": self.job, "state": self.state,
                "uploads": sorted(u.policy.owner for u in self._uploads.values() if u.frame is not None)}

    # -- 6. destroy
    def destroy(self) -> dict[str, Any]:
        self._require("created", "attested", "uploading", "trained", step="destroy")
        ciphertexts = []
        for uid, up in self._uploads.items():
            zeroise(up.plain)
            if up.frame is not None:
                _wipe_frame(up.frame)
            up.frame = None
            ciphertexts.append({"upload": uid, "owner": up.policy.owner, "chunk_tags_sha256": up.digest.hexdigest()})
        self._model = None
        removed = sum(1 for p in self.workdir.rglob("*") if p.is_file())
        shutil.rmtree(self.workdir, ignore_errors=True)
        body = {
            "enclave": self.id,
            "job": self.job,
            "key_bundle_sha256": hashlib.sha256(self.bundle.to_bytes()).hexdigest(),
            "destroyed_at": dt.datetime.now(dt.UTC).isoformat(),
            "uploads": ciphertexts,
            "files_removed": removed,
            "keys": "dropped",
            "events": self.audit,  # create, attest, upload, train, release: signed with the receipt
        }
        payload = json.dumps(body, sort_keys=True).encode()
        receipt = {"receipt": payload.decode(), "signature": self._keys.sign(payload).hex()}
        self._keys.destroy()
        self._uploads.clear()
        self.state = "destroyed"
        return receipt


def _wipe_frame(frame: pd.DataFrame) -> None:
    """Zero a table's numeric blocks in place (best effort: pandas internals).

    Copies that pandas or scikit-learn made while training are freed, not wiped;
    Python gives no handle on them. The process ending is the final wipe.
    """
    for block in getattr(getattr(frame, "_mgr", None), "blocks", ()):
        values = getattr(block, "values", None)
        if isinstance(values, np.ndarray) and values.flags.writeable and values.dtype.kind in "fiub":
            values.fill(0)


def verify_receipt(receipt: dict[str, Any], bundle: KeyBundle) -> dict[str, Any]:
    """Check a destruction receipt against the attested key bundle; return its body."""
    from cryptography.exceptions import InvalidSignature

    payload = str(receipt["receipt"]).encode()
    try:
        bundle.verify(bytes.fromhex(str(receipt["signature"])), payload)
    except (InvalidSignature, ValueError):
        raise ProtocolAbort("destruction receipt signature is invalid", step="destroy") from None
    body: dict[str, Any] = json.loads(payload)
    return body
