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
4. *run* (may repeat): the job spec's steps on the joined tables
   (:mod:`.steps`) — only steps and models every owner's policy allows; a
   ``predict`` of a registered model opens it from its sealed blob
   (:mod:`.saved`), and each trained model is returned sealed to this
   enclave's identity for the registry; or the older *train* (one algorithm: join, split, fit, evaluate). The model is
   checkpointed to the working directory as sealed state (:mod:`.sealing`).
5. *release*: a model or a step's scores, HPKE-sealed to a party every owner
   named for it; metrics only if every owner allows them.
6. *destroy*: drop keys, zero the plaintext buffers, remove the working
   directory, return a receipt signed with the attested key.

Reveals: to each named recipient, the model or the scores every owner named
it for; to the caller, metrics (if every owner allows them), row counts and
state. Security model: malicious host and platform;
trusted CPU vendor (or simulator root) and the measured code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sharedml.errors import ConfigError, DataError, PolicyDenied, ProtocolAbort
from sharedml.tee import scheme
from sharedml.tee.attestation.base import Attester, Evidence
from sharedml.tee.authz import DataPolicy, SignedPolicy, release_parties, seal_binding
from sharedml.tee.enclave import learners, saved, steps
from sharedml.tee.enclave.budget import MemoryBudget
from sharedml.tee.enclave.sealing import SealedStore
from sharedml.tee.enclave.stream import STREAM_ALGORITHMS, Spool, fit_streaming
from sharedml.tee.enclave.wipe import wipe_frame, zeroise
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
        budget: MemoryBudget | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self._id_column = "id"  # batched uploads: the id column every provider sorts by
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
        self._spools: dict[str, Spool] = {}
        self.budget = budget if budget is not None else MemoryBudget()
        self._model: Any = None
        self._train_request: dict[str, Any] = {}
        self._outcome = steps.Outcome()
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
    def begin_upload(
        self, upload_id: str, sealed_key: bytes, signed_policy: bytes, size: int, *, batched: bool = False
    ) -> None:
        """Open an upload: a whole table of ``size`` bytes held in memory, or ``batched`` (spooled)."""
        self._require("attested", "uploading", step="upload")
        if upload_id in self._uploads or upload_id in self._spools or not upload_id.isalnum() or len(upload_id) > 64:
            raise ProtocolAbort(f"bad or repeated upload id {upload_id!r}", step="upload")
        if not batched and not 0 < size <= MAX_UPLOAD_BYTES:
            raise DataError(f"upload size {size} outside 1..{MAX_UPLOAD_BYTES}", step="upload")
        try:
            signed = SignedPolicy.from_bytes(signed_policy)
        except (ValueError, KeyError, TypeError):
            raise PolicyDenied("malformed data policy", step="upload") from None
        policy = signed.verify(job=self.job, owners=self._owners)
        owners = [u.policy.owner for u in self._uploads.values()] + [s.policy.owner for s in self._spools.values()]
        if policy.owner in owners:
            raise ProtocolAbort(f"{policy.owner!r} already uploaded", party=policy.owner, step="upload")
        key = self._keys.open(sealed_key, upload_info(self.job, upload_id, signed.digest))
        opener = ChunkOpener(key, upload_id.encode())
        if batched:
            self._spools[upload_id] = Spool(policy, self.workdir / f"{upload_id}.spool", key, upload_id.encode(), opener)
        else:
            self.budget.take(size, "the whole table", policy.owner)
            self._uploads[upload_id] = _Upload(policy, opener, bytearray(size))
        self.state = "uploading"

    def upload_chunk(self, upload_id: str, seq: int, last: bool, ciphertext: bytes | memoryview) -> None:
        spool = self._spools.get(upload_id)
        if spool is not None:
            try:
                spool.add(seq, last, ciphertext, self._id_column, self.budget)
            except (ProtocolAbort, DataError, PolicyDenied):
                self.abort_upload(upload_id)
                raise
            return
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
        spool = self._spools.pop(upload_id, None)
        if spool is not None:
            spool.path.unlink(missing_ok=True)
            self._log("upload.abort", owner=spool.policy.owner)
        up = self._uploads.pop(upload_id, None)
        if up is not None:
            zeroise(up.plain)
            self.budget.give_back(len(up.plain))
            self._log("upload.abort", owner=up.policy.owner)

    def finish_upload(self, upload_id: str) -> dict[str, Any]:
        spool = self._spools.get(upload_id)
        if spool is not None:
            if not spool.done:
                self.abort_upload(upload_id)
                raise ProtocolAbort("batched upload ended before its final chunk", party=spool.policy.owner,
                                    step="upload")
            self._log("upload", owner=spool.policy.owner, rows=spool.rows, batches=len(spool.index))
            return {"owner": spool.policy.owner, "rows": spool.rows, "columns": len(spool.columns) + 1,
                    "batches": len(spool.index)}
        up = self._uploads.get(upload_id)
        if up is None:
            raise ProtocolAbort(f"unknown upload {upload_id!r}", step="upload")
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
        self.budget.give_back(len(up.plain))
        up.plain = bytearray()
        try:
            self.budget.take(int(frame.memory_usage(deep=True).sum()), "the decoded table", up.policy.owner)
        except DataError:
            self.abort_upload(upload_id)
            raise
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
        if algorithm not in (*learners.ALGORITHMS, *STREAM_ALGORITHMS):
            raise ConfigError(f"unknown algorithm {algorithm!r}", step="train")
        policies = self._policies()
        for p in policies:
            if algorithm not in p.algorithms:
                raise PolicyDenied(f"{algorithm} is not allowed by the owner", party=p.owner, step="train")
        id_column = str(request.get("id", "id"))
        if algorithm in STREAM_ALGORITHMS:
            return self._finish_train(request, policies, *fit_streaming(self._spools, request, id_column, self.budget))
        if self._spools:
            raise ConfigError(f"{algorithm} needs whole tables in memory; batched uploads train with "
                              f"{', '.join(STREAM_ALGORITHMS)}", step="train")
        tables = {u.policy.owner: u.frame for u in self._uploads.values() if u.frame is not None}
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
        return self._finish_train(request, policies, self._model, metrics)

    def _finish_train(self, request: dict[str, Any], policies: list[DataPolicy], model: Any,
                      metrics: dict[str, float | int]) -> dict[str, Any]:
        algorithm = str(request["algorithm"])
        self._model, self.metrics, self._train_request = model, metrics, dict(request)
        if self._sealer is not None:
            (self.workdir / f"{algorithm}.sealed").write_bytes(self._sealer.seal(algorithm, model.to_bytes()))
        self.state = "trained"
        self._log("train", algorithm=algorithm, rows=metrics.get("rows"))
        return metrics if all(p.metrics for p in policies) else {}

    def _completed_policies(self) -> list[DataPolicy]:
        return [u.policy for u in self._uploads.values() if u.frame is not None] + \
            [s.policy for s in self._spools.values() if s.done]

    def _policies(self) -> list[DataPolicy]:
        policies = self._completed_policies()
        if not policies:
            raise ProtocolAbort("no completed uploads", step="train")
        return policies

    # -- 4'. run the job's steps
    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run a spec's steps (``request``: ``steps`` as :func:`sharedml.tee.scheme.wire_steps`
        makes them, ``label`` as ``owner.column``, ``id``); return each step's metrics,
        empty unless every owner allows metrics."""
        self._require("uploading", "trained", step="run")
        policies = self._policies()
        parsed = steps.parse(list(request.get("steps") or []))
        for step_id, component, params in parsed:
            wanted = scheme.use(component, params)
            for p in policies:
                if wanted not in p.algorithms:
                    raise PolicyDenied(f"step {step_id!r} ({wanted}) is not allowed by the owner",
                                       party=p.owner, step=step_id)
        if self._spools:
            raise ConfigError("the job's steps need whole tables in memory; batched uploads train with "
                              f"{', '.join(STREAM_ALGORITHMS)}", step="run")
        id_column = str(request.get("id", "id"))
        tables = {u.policy.owner: u.frame for u in self._uploads.values() if u.frame is not None}
        models = saved.open_models(self._sealer, parsed, dict(request.get("saved") or {}))
        inside = steps.InsideRun(learners.join(tables, id_column), job=self.job, label=str(request.get("label")),
                                 id_column=id_column, workdir=self.workdir / "run", saved=models)
        self._outcome = inside.run(parsed)
        if self._outcome.models:
            model = list(self._outcome.models.values())[-1]
            self._finish_train({"algorithm": model.kind}, policies, model, {})
        self.state = "trained"
        self._log("run", steps=[s["id"] for s in self._outcome.steps])
        allowed = all(p.metrics for p in policies)
        return {"steps": [{**s, "metrics": s["metrics"] if allowed else {}} for s in self._outcome.steps],
                "models": sorted(self._outcome.models), "scores": sorted(self._outcome.scores),
                "sealed": saved.seal_models(self._sealer, self._outcome.models, seal_binding(policies))}

    # -- 5. release
    def release(self, recipient: str, what: str = "model", step: str | None = None) -> bytes:
        """The model (of ``step``, default the last trained) or a step's scores, sealed to ``recipient``."""
        self._require("trained", step="release")
        allowed = release_parties(self._policies(), what)
        if recipient not in allowed:
            raise PolicyDenied(f"{recipient!r} is not named by every owner's {what} release rule", step="release")
        if what == "model":
            model = self._model if step is None else self._outcome.models.get(step)
            payload = model.to_bytes() if model is not None else None
        elif what == "scores":
            scores = self._outcome.scores.get(step or "") if step else None
            payload = scores.to_parquet() if scores is not None else None
        else:
            raise ProtocolAbort(f"nothing called {what!r} to release", step="release")
        if payload is None:
            raise ProtocolAbort(f"no {what} of step {step!r} to release", step="release")
        bundle = KeyBundle.from_bytes(bytes.fromhex(allowed[recipient]))
        sealed = bundle.seal(payload, release_info(self.job, recipient, what))
        self._log("release", recipient=recipient, what=what, step=step)
        return sealed

    def status(self) -> dict[str, Any]:
        return {"enclave": self.id, "job": self.job, "state": self.state,
                "uploads": sorted(p.owner for p in self._completed_policies())}

    # -- 6. destroy
    def destroy(self) -> dict[str, Any]:
        self._require("created", "attested", "uploading", "trained", step="destroy")
        ciphertexts = []
        for uid, up in self._uploads.items():
            zeroise(up.plain)
            if up.frame is not None:
                wipe_frame(up.frame)
            up.frame = None
            ciphertexts.append({"upload": uid, "owner": up.policy.owner, "chunk_tags_sha256": up.digest.hexdigest()})
        for uid, spool in self._spools.items():
            spool.key = b""
            ciphertexts.append({"upload": uid, "owner": spool.policy.owner, "batches": len(spool.index)})
        self._model = None
        self._outcome = steps.Outcome()
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
        self._spools.clear()
        self.state = "destroyed"
        return receipt
