"""Online scoring of a registered TEE model inside the enclave: one request's features meet here only.

A model a ``scheme: tee`` job trained is registered sealed to the enclave's
sealing identity (:mod:`.saved`). A *scoring enclave* (``python -m
sharedml.tee.enclave.serve_rpc``) serves it online to the label holder's
scoring gateway, with every other party's features sent by that party's own
serving node — never through the label holder:

1. *Attest, on every connection.* The gateway and each partner's serving
   node pin the certificate whose key the enclave made inside and accept the
   channel only after evidence binding that key to their fresh nonce
   verifies against their own policy (measurement or signer + product +
   minimum svn, TCB, debug off; :mod:`sharedml.tee.ratls`). A new enclave (a
   new key) is attested again before any feature is sent to it. The enclave
   requires a client certificate from the deployment CA and takes each
   caller's party from it, never from a message.
2. *Load* (:meth:`ScoringEnclave.load`, any serving party): the sealed blob
   of a version and its registered fingerprint; the enclave checks the blob's
   SHA-256 against the fingerprint (the version the registry names, not one
   the host substitutes) and unseals it under its own sealing identity — a
   blob sealed for another signer, product or platform does not open. The
   caller learns the model's parties and its own columns, not a parameter.
3. *Features* (:meth:`ScoringEnclave.features`, a partner's serving node,
   asked by the gateway for a micro-batch of ids): the partner's raw columns
   for those ids, the version and fingerprint *it* resolved in its own
   registry, a batch id, and ``for``: the label holder it consents to score
   for (its node's ``--caller`` list). Held until the gateway's score call,
   at most :data:`PENDING_SECONDS` and :data:`PENDING_LIMIT` batches.
4. *Score* (:meth:`ScoringEnclave.score`, the gateway): the same batch id and
   ids and the label holder's own raw columns. The enclave takes every other
   model party's contribution *for this caller*, checks they name the loaded
   version and fingerprint and the same ids in the same order, qualifies
   each party's columns with the party its certificate names (a party
   supplies only its own columns), scores with the model
   (:meth:`~sharedml.tee.model.ReleasedModel.predict`, the batch ``predict``'s
   own function) and returns the scores to the caller only. The contributions
   are dropped.

Reveals:

* to the label holder (gateway): the scores of the ids it asks for (what it
  would compute with the model), which ids a partner refused or does not
  know; the model's parties and its own column names. Never a partner's
  feature, a parameter or a partial score.
* to each partner (serving node): the ids asked for and when, the version;
  nothing of the label holder's features or of the scores.
* to the enclave: every party's raw columns of every id asked (in memory,
  per request), the ids, the model. To its host and operator: the sealed
  blob's size and fingerprint, message sizes and timing (how many ids per
  batch, which parties took part), the parties' certificate names.

Security model: that of the TEE scheme (:mod:`.runtime`): a malicious host,
operator and network; a trusted CPU vendor (or the simulator's root — which
trusts the host, so it shows the protocol, not isolation) and the measured
code. Among the parties semi-honest as in MPC serving: the label holder can
ask for any id a partner's allow-list admits and so collect scores (not
features) of chosen customers; a partner's only control over that is its
allow-list and its audit log.

References: Knauth et al., "Integrating Remote Attestation with Transport
Layer Security" (Intel RA-TLS, 2018); FATE-Serving's guest/host split of
online inference, with the combination moved into the enclave.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sharedml.errors import DataError, PolicyDenied, ProtocolAbort
from sharedml.tee.enclave import saved
from sharedml.tee.enclave.sealing import SealedStore
from sharedml.tee.model import ReleasedModel

#: Seconds a partner's contribution waits for the gateway's score call.
PENDING_SECONDS = 30.0
#: Most batches waiting at once (the oldest goes first when full).
PENDING_LIMIT = 4096
MAX_ROWS = 65_536


def encode_matrix(X: np.ndarray) -> bytes:
    """A float64 matrix as little-endian bytes (its shape travels in the header)."""
    return np.ascontiguousarray(X, dtype="<f8").tobytes()


def decode_matrix(body: bytes, rows: int, columns: int, party: str, step: str) -> np.ndarray:
    """The matrix a header announced, or :class:`DataError` naming ``party`` and ``step``."""
    if not 0 < rows <= MAX_ROWS or columns < 0 or len(body) != rows * columns * 8:
        raise DataError(f"{rows} x {columns} features do not match {len(body)} bytes", party=party, step=step)
    return np.frombuffer(body, dtype="<f8").reshape(rows, columns).astype(np.float64)


@dataclass(frozen=True)
class Batch:
    """One party's raw columns for one micro-batch of ids (as :func:`read_batch` checks them)."""

    party: str
    version: str
    ids: tuple[str, ...]
    columns: tuple[str, ...]
    X: np.ndarray


def read_batch(party: str, header: dict[str, Any], body: bytes, step: str) -> Batch:
    try:
        ids = tuple(str(i) for i in header["ids"])
        columns = tuple(str(c) for c in header["columns"])
        version = str(header["version"])
    except (KeyError, TypeError):
        raise ProtocolAbort("a score message needs version, ids and columns", party=party, step=step) from None
    return Batch(party, version, ids, columns, decode_matrix(body, len(ids), len(columns), party, step))


@dataclass(frozen=True)
class _Loaded:
    model: ReleasedModel
    fingerprint: str
    parties: tuple[str, ...]


class ScoringEnclave:
    """The scoring enclave's state: loaded versions and pending contributions (module docstring).

    ``sealer`` is this enclave's sealing identity; ``clock`` is injected for the
    pending table's expiry.
    """

    def __init__(self, sealer: SealedStore | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._sealer = sealer
        self._clock = clock
        self._models: dict[str, _Loaded] = {}
        self._pending: OrderedDict[tuple[str, str], tuple[float, dict[str, Batch]]] = OrderedDict()
        self._lock = threading.Lock()

    # -- 2. load
    def load(self, caller: str, header: dict[str, Any], blob: bytes) -> dict[str, Any]:
        version, expected = str(header.get("version", "")), str(header.get("fingerprint", ""))
        if version not in self._models:
            model = saved.open_blob(self._sealer, version, blob, expected, step="serve: load")
            parties = tuple(sorted({f.split(".", 1)[0] for f in model.features}))
            with self._lock:
                self._models[version] = _Loaded(model, expected, parties)
        loaded = self._loaded(version, expected, caller, "serve: load")
        own = [f.split(".", 1)[1] for f in loaded.model.features if f.startswith(caller + ".")]
        return {"version": version, "parties": list(loaded.parties), "columns": own, "task": loaded.model.task}

    def _loaded(self, version: str, fingerprint: str, party: str, step: str) -> _Loaded:
        loaded = self._models.get(version)
        if loaded is None:
            raise ProtocolAbort(f"model version {version!r} is not loaded in this enclave", party=party, step=step,
                                remedy="the gateway loads a version when it switches to it; switch again")
        if fingerprint != loaded.fingerprint:
            raise PolicyDenied(f"party {party!r} names another fingerprint of {version!r} than the one loaded",
                               party=party, step=step, remedy="serve the version the registry names")
        return loaded

    # -- 3. a partner's features
    def features(self, caller: str, header: dict[str, Any], body: bytes) -> dict[str, Any]:
        batch = read_batch(caller, header, body, "serve: features")
        self._loaded(batch.version, str(header.get("fingerprint", "")), caller, "serve: features")
        key = (str(header.get("for", "")), str(header.get("batch", "")))
        if not key[0] or not 16 <= len(key[1]) <= 64:
            raise ProtocolAbort("features need 'for' (the label holder) and a batch id", party=caller,
                                step="serve: features")
        with self._lock:
            self._expire()
            at, parts = self._pending.get(key, (self._clock(), {}))
            if caller in parts:
                raise ProtocolAbort(f"party {caller!r} sent batch {key[1]} twice", party=caller,
                                    step="serve: features")
            self._pending[key] = (at, {**parts, caller: batch})
            while len(self._pending) > PENDING_LIMIT:
                self._pending.popitem(last=False)
        return {"rows": len(batch.ids)}

    def _expire(self) -> None:
        limit = self._clock() - PENDING_SECONDS
        while self._pending and next(iter(self._pending.values()))[0] < limit:
            self._pending.popitem(last=False)

    # -- 4. the label holder's score call
    def score(self, caller: str, header: dict[str, Any], body: bytes) -> np.ndarray:
        own = read_batch(caller, header, body, "serve: score")
        loaded = self._loaded(own.version, str(header.get("fingerprint", "")), caller, "serve: score")
        with self._lock:
            _, parts = self._pending.pop((caller, str(header.get("batch", ""))), (0.0, {}))
        frame: dict[str, np.ndarray] = {}
        for party in loaded.parties:
            batch = own if party == caller else parts.get(party)
            if batch is None:
                raise ProtocolAbort(f"party {party!r}'s features for this batch did not reach the enclave",
                                    party=party, step="serve: score",
                                    remedy=f"check {party!r}'s serving node reaches the enclave; retry")
            if batch.version != own.version or batch.ids != own.ids:
                raise ProtocolAbort(f"party {party!r} sent features of other ids or another version",
                                    party=party, step="serve: score")
            frame.update({f"{party}.{c}": batch.X[:, i] for i, c in enumerate(batch.columns)})
        missing = [f for f in loaded.model.features if f not in frame]
        if missing:
            party, column = missing[0].split(".", 1)
            raise DataError(f"the model needs column {column!r} of party {party!r}, which it did not send",
                            party=party, column=column, step="serve: score",
                            remedy="serve the feature source the model was trained on")
        X = pd.DataFrame({f: frame[f] for f in loaded.model.features})
        if not np.isfinite(X.to_numpy()).all():
            raise DataError("a feature the model needs is missing or infinite", step="serve: score")
        return np.asarray(loaded.model.predict(X), dtype=np.float64)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"versions": sorted(self._models), "pending": len(self._pending)}
