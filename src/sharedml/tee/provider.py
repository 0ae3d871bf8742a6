"""The data provider SDK (8.6-2): attest → encrypt → upload → result.

Runs in the provider's process, with its raw data and its keys:

1. :meth:`Provider.attest` sends a fresh nonce, gets evidence and the
   enclave's key bundle, and verifies them against the provider's own
   :class:`~sharedml.tee.attestation.Policy` (one verification path),
   including that the evidence binds the TLS key its channel is pinned to
   (:mod:`sharedml.tee.ratls`). Only a bundle verified *in this session* is
   remembered.
2. :meth:`Provider.upload` refuses unless (1) succeeded and the owner-signed
   :class:`~sharedml.tee.authz.DataPolicy` admits the verified claims (key
   release); then it draws a data key, HPKE-seals it to the enclave's bundle
   (``info`` binds job, stream id and policy) and streams the table as
   Parquet in AES-256-GCM chunks.
3. :meth:`Provider.result` opens a model, :meth:`Provider.scores` a step's
   scores, that the enclave released to this party's release key.

Reveals: to the platform and network, the table's encrypted size only; to the
enclave, the table.
"""

from __future__ import annotations

import datetime as dt
import io
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from cryptography.hazmat.primitives.asymmetric import ed25519

from sharedml.errors import DataError, PolicyDenied, ProtocolAbort
from sharedml.tee.attestation.base import Claims, Policy, Verifier
from sharedml.tee.authz import DataPolicy, SignedPolicy
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.envelope import (
    CHUNK,
    X25519,
    ChunkSealer,
    EnclaveKeys,
    KeyBundle,
    data_key,
    release_info,
    upload_info,
)
from sharedml.tee.model import ReleasedModel
from sharedml.tee.ratls import attest_enclave


def table_bytes(data: pd.DataFrame | str | Path | bytes) -> bytes:
    """A DataFrame, CSV or Parquet file (or Parquet bytes) as Parquet bytes (never pickle)."""
    if isinstance(data, bytes):
        if data[:4] != b"PAR1":
            raise DataError("bytes given to upload are not a Parquet file", step="upload")
        return data
    if isinstance(data, pd.DataFrame):
        frame = data
    else:
        path = Path(data)
        if not path.is_file():
            raise DataError(f"no such file {path}", step="upload")
        if path.suffix == ".parquet":
            return path.read_bytes()
        try:
            frame = pd.read_csv(path)
        except (ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"cannot read {path}: {exc}", step="upload") from None
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def chunked(data: bytes, sealer: ChunkSealer, size: int) -> Iterator[tuple[int, bool, bytes]]:
    """``(seq, last, ciphertext)`` for each ``size``-byte slice of ``data`` (views, no copies)."""
    view = memoryview(data)
    n = max(1, -(-len(data) // size))
    for i in range(n):
        seq = sealer.seq
        yield seq, i == n - 1, sealer.seal(view[i * size : (i + 1) * size], i == n - 1)


def batch_chunks(frame: pd.DataFrame, sealer: ChunkSealer, rows: int) -> Iterator[tuple[int, bool, bytes]]:
    """``(seq, last, ciphertext)``: each ``rows``-row slice as one Arrow IPC record batch, sealed."""
    import pyarrow as pa

    batches = pa.Table.from_pandas(frame, preserve_index=False).to_batches(max_chunksize=rows) or [
        pa.RecordBatch.from_pandas(frame, preserve_index=False)]
    for i, batch in enumerate(batches):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        last = i == len(batches) - 1
        seq = sealer.seq
        yield seq, last, sealer.seal(sink.getvalue().to_pybytes(), last)


class Provider:
    """One data owner talking to one enclave."""

    def __init__(
        self,
        name: str,
        client: EnclaveClient,
        verifier: Verifier,
        *,
        owner_key: ed25519.Ed25519PrivateKey | None = None,
        release_kem: str = X25519,
        release_keys: EnclaveKeys | None = None,
        chunk_bytes: int = CHUNK,
    ) -> None:
        self.name = name
        self.client = client
        self.verifier = verifier
        self.owner_key = owner_key or ed25519.Ed25519PrivateKey.generate()
        self._release_keys = release_keys or EnclaveKeys(release_kem, signing=False)
        self.chunk_bytes = chunk_bytes
        self._bundle: KeyBundle | None = None
        self._job: str | None = None
        self.claims: Claims | None = None

    @property
    def bundle(self) -> KeyBundle | None:
        """The job's key bundle attested in this session (to verify its destruction receipt)."""
        return self._bundle

    @property
    def release_key(self) -> str:
        """This party's release key bundle (hex), to name in owners' policies."""
        return self._release_keys.bundle.to_bytes().hex()

    def attest(self, policy: Policy, now: dt.datetime | None = None) -> Claims:
        claims, bundle = attest_enclave(self.client, self.verifier, policy, now)
        if bundle is None:
            raise ProtocolAbort("the enclave attested no job's key", party=self.name, step="attest",
                                remedy="address the job (EnclaveClient.for_job) before attesting")
        self._bundle = bundle
        self.claims = claims
        return claims

    def grant(
        self,
        job: str,
        columns: Sequence[str],
        *,
        algorithms: Sequence[str] | None = None,
        model_to: dict[str, str] | None = None,
        scores_to: dict[str, str] | None = None,
        metrics: bool = True,
        measurements: Sequence[str] = (),
        signers: Sequence[str] = (),
        valid_for: dt.timedelta = dt.timedelta(hours=1),
        seal: str = "signer",
    ) -> SignedPolicy:
        """Sign a data-use policy for ``job`` as this owner.

        ``algorithms``: the steps and models the enclave may run on the data
        (default: every one it knows, :func:`sharedml.tee.scheme.uses`, and the
        single-algorithm ``Train`` path's); ``model_to``/``scores_to``: who gets
        the model / the scores (party -> release key); ``metrics``: whether
        metrics may leave the enclave; ``seal``: what a model trained on the data is sealed to for
        later scoring — ``signer`` (every later build of the release key) or ``measurement`` (this
        exact build only; :mod:`sharedml.tee.enclave.sealing`).
        """
        from sharedml.tee.scheme import uses

        expires = dt.datetime.now(dt.UTC) + valid_for
        allowed = (*uses(), "xgboost", "logistic_regression_sgd") if algorithms is None else algorithms
        return DataPolicy(
            owner=self.name, job=job, algorithms=tuple(allowed), columns=tuple(columns),
            expires_at=int(expires.timestamp()), model_to=dict(model_to or {}), metrics=metrics,
            measurements=tuple(measurements), signers=tuple(signers), scores_to=dict(scores_to or {}),
            seal=seal,
        ).sign(self.owner_key)

    def upload(self, data: pd.DataFrame | str | Path | bytes, policy: SignedPolicy) -> dict[str, Any]:
        """Upload a whole table (held in enclave memory; see :meth:`upload_batches` for large ones)."""
        sealed, upload_id, sealer = self._open_upload(policy)
        payload = table_bytes(data)
        chunks = chunked(payload, sealer, self.chunk_bytes)
        return self.client.upload(upload_id, sealed, policy.to_bytes(), len(payload), chunks)

    def upload_batches(
        self, data: pd.DataFrame | str | Path, policy: SignedPolicy, *, batch_rows: int = 50_000, id_column: str = "id"
    ) -> dict[str, Any]:
        """Upload sorted by id in record batches the enclave spools and re-reads per epoch (6.3 steps 3-6).

        For tables larger than the enclave's memory budget; train them with a
        streaming learner (``logistic_regression_sgd``).
        """
        frame = data if isinstance(data, pd.DataFrame) else pd.read_csv(data)
        if id_column not in frame.columns:
            raise DataError(f"no id column {id_column!r}", party=self.name, step="upload")
        ordered = frame.sort_values(id_column, kind="stable")
        sealed, upload_id, sealer = self._open_upload(policy)
        chunks = batch_chunks(ordered, sealer, batch_rows)
        return self.client.upload(upload_id, sealed, policy.to_bytes(), 0, chunks, batched=True)

    def _open_upload(self, policy: SignedPolicy) -> tuple[bytes, str, ChunkSealer]:
        """Key release: refuse unless attested in this session and the grant admits the claims."""
        if self._bundle is None or self.claims is None:
            raise PolicyDenied(
                "refusing to send data to an enclave not verified in this session",
                party=self.name, step="upload", remedy="call attest(policy) first",
            )
        grant = DataPolicy.from_bytes(policy.body)
        if not grant.admits(self.claims):
            raise PolicyDenied(
                "the enclave's measurement/signer is not allowed by the data policy",
                party=self.name, step="upload",
            )
        key, upload_id = data_key(), secrets.token_hex(8)
        sealed = self._bundle.seal(key, upload_info(grant.job, upload_id, policy.digest))
        self._job = grant.job
        return sealed, upload_id, ChunkSealer(key, upload_id.encode())

    def result(self, job: str | None = None, step: str | None = None) -> ReleasedModel:
        """The model the enclave released to this party (``job``: default, the last upload's;
        ``step``: the ``train`` step, default the last)."""
        job = self._result_job(job)
        sealed = self.client.result(self.name, "model", step)
        return ReleasedModel.from_bytes(self._release_keys.open(sealed, release_info(job, self.name)))

    def scores(self, step: str, job: str | None = None) -> pd.DataFrame:
        """The scores of a ``predict``/``evaluate`` step released to this party: ids and ``score``."""
        job = self._result_job(job)
        sealed = self.client.result(self.name, "scores", step)
        plain = self._release_keys.open(sealed, release_info(job, self.name, "scores"))
        return pd.read_parquet(io.BytesIO(plain))

    def open_release(self, sealed: bytes, job: str, what: str = "model") -> bytes:
        """Open a release relayed by someone else (the platform keeps them for the label holder)."""
        info = release_info(job, self.name) if what == "model" else release_info(job, self.name, what)
        return self._release_keys.open(sealed, info)

    def _result_job(self, job: str | None) -> str:
        job = job if job is not None else self._job
        if job is None:
            raise PolicyDenied("no job to fetch a result for", party=self.name, step="result",
                               remedy="upload first, or pass job=")
        return job
