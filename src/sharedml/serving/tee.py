"""Online scoring of a TEE-trained model: the label holder's gateway with model kind ``tee``.

The protocol, what it reveals and its security model are
:mod:`sharedml.tee.enclave.serve`'s. Here, the label holder's side of it: a
:class:`TeeGateway` is the ordinary scoring gateway (HTTP face, routing,
canary and rollback, micro-batching, audit of hashed ids) that also serves
versions whose registry entry is a sealed TEE model (its one fingerprint is
``enclave``). Per micro-batch of such a version:

1. its own raw columns the model names (from the request, or looked up by
   id in its feature source — no pipeline: a TEE model standardises inside);
2. asks every partner's serving node, concurrently and under the request
   timeout, to send *its own* columns for those ids to the enclave
   (``Contribute``, :mod:`sharedml.serving.tee_node`); a partner answers
   only each id's status (scored, refused by its allow-list, unknown);
3. sends its own columns to the enclave over its attested link
   (:mod:`sharedml.serving.enclave_link`) and gets the scores back;
4. answers and audits each request as for MPC versions.

A partner that does not answer fails the batch's requests naming it
(504/502), an enclave that does not answer names ``enclave``; the next
request tries again, so service recovers when either is back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np
import pandas as pd

from sharedml.errors import (
    ChannelError,
    ConfigError,
    DataError,
    FrameError,
    PeerUnreachable,
    ProtocolAbort,
    SharedMLError,
)
from sharedml.serving import wire
from sharedml.serving.adapters import FeatureAdapter, positions
from sharedml.serving.batcher import Item
from sharedml.serving.enclave_link import EnclaveLink
from sharedml.serving.gateway import Gateway
from sharedml.serving.remote import PartnerClient
from sharedml.tee.enclave import wire as tee_wire
from sharedml.tee.enclave.saved import FINGERPRINT
from sharedml.tee.enclave.serve import decode_matrix, encode_matrix

log = logging.getLogger("sharedml.serving")
CONTRIBUTE = f"/{wire.SERVICE}/Contribute"
ENCLAVE_NAMED = "(party 'enclave'"  # how a partner's error names a failure of its link to the enclave
STEP = "serve: score"


@dataclass(frozen=True)
class TeeVersion:
    """A TEE version as the gateway serves it: what the enclave said when it loaded it."""

    uid: str
    fingerprint: str
    partners: tuple[str, ...]
    columns: tuple[str, ...]


class RawFeatures:
    """A party's raw ``columns`` of its feature source as float64 rows by id (no pipeline)."""

    def __init__(self, adapter: FeatureAdapter, columns: tuple[str, ...], step: str) -> None:
        self.adapter, self.columns, self.party = adapter, columns, adapter.party
        missing = [c for c in columns if c not in adapter.columns]
        if missing:
            raise ConfigError(f"the model needs column {missing[0]!r}, which {self.party!r}'s feature source "
                              "lacks", party=self.party, column=missing[0], step=step,
                              remedy="serve the feature source the model was trained on")
        table = adapter.table()
        self._matrix = None if table is None else self.matrix(table[0])
        self._rows = {} if table is None else table[1]

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        try:
            return frame[list(self.columns)].to_numpy(np.float64)
        except (ValueError, TypeError):
            raise DataError("the model's columns must be numeric", party=self.party, step=STEP) from None

    def fetch(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(X, found)``: each id's columns (zeros where the source lacks the id)."""
        if self._matrix is not None:
            pos = positions(self._rows, ids)
            found = pos >= 0
            return np.where(found[:, None], self._matrix[np.maximum(pos, 0)], 0.0), found
        frame, found = self.adapter.rows(ids)
        X = np.zeros((len(ids), len(self.columns)))
        X[found] = self.matrix(frame)
        return X, found


class TeePartnerClient(PartnerClient):
    """The gateway's connection to a partner's node, with the TEE ``Contribute`` call."""

    async def contribute(self, version: str, batch: str, ids: list[str], timeout: float) -> np.ndarray:
        """Ask the partner to send its columns of ``ids`` to the enclave; each id's status."""
        call = self._channel.unary_unary(CONTRIBUTE)
        try:
            raw = await call(tee_wire.encode({"version": version, "batch": batch, "ids": ids}), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if ENCLAVE_NAMED in (exc.details() or ""):  # the partner could not reach or trust the enclave
                raise PeerUnreachable(f"party {self.party!r} could not send its features to the enclave: "
                                      f"{exc.details()}", party="enclave", step=STEP,
                                      remedy="check the scoring enclave (running, attested)") from None
            raise self._translate(exc, timeout, STEP) from None
        try:
            _, body = tee_wire.decode(raw)
        except ProtocolAbort as exc:
            raise FrameError(exc.message, party=self.party, step=STEP) from None
        status = np.frombuffer(body, dtype=np.uint8)
        if len(status) != len(ids) or (status.size and status.max() > wire.UNKNOWN):
            raise FrameError(f"party {self.party!r} answered {len(status)} statuses for {len(ids)} ids",
                             party=self.party, step=STEP)
        return status


class TeeGateway(Gateway):
    """The scoring gateway, serving TEE versions too (module docstring).

    Args (beyond :class:`~sharedml.serving.gateway.Gateway`'s):
        link: the label holder's attested link to the scoring enclave.
        blobs: the folder of sealed TEE models (``MODELS/enclave``).
    """

    def __init__(self, *args: Any, link: EnclaveLink, blobs: Path | None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.link, self.blobs = link, blobs
        self._tee: dict[str, TeeVersion] = {}
        self._raw: dict[str, RawFeatures] = {}
        link.on_connect = self._reload

    async def use(self, version: str, strict: bool = True) -> Any:  # a LabelPart or a TeeVersion
        if version in self._tee:
            return self._tee[version]
        fingerprint = self.parts.fingerprints(version).get(FINGERPRINT) if self.parts.registry else None
        if fingerprint is None:
            return await super().use(version, strict)
        try:
            tee = await asyncio.to_thread(self._load, version, fingerprint)
        except ChannelError as exc:
            if strict:
                raise
            log.warning("TEE version %s not loaded in the enclave yet: %s", version, exc)
            return None
        for p in tee.partners:
            if p not in self.partners:
                raise ConfigError(f"version {version!r} needs party {p!r}, which this gateway has no address "
                                  "for", party=self.party, step="serve: load", remedy=f"pass --partner {p}=HOST:PORT")
        if self.features is not None:
            self._raw[version] = RawFeatures(self.features, tee.columns, "serve: load")
        self._tee[version] = tee
        return tee

    def _load(self, uid: str, fingerprint: str) -> TeeVersion:
        path = None if self.blobs is None else self.blobs / f"{uid}.sealed"
        if path is None or not path.exists():
            raise ConfigError(f"the sealed model of TEE version {uid} is not in this gateway's models folder",
                              party=self.party, step="serve: load",
                              remedy="serve from the models folder the TEE job registered it in (--models DIR)")
        header, _ = self.link.call("Load", {"version": uid, "fingerprint": fingerprint}, path.read_bytes(),
                                   timeout=self.settings.timeout * 5)
        return TeeVersion(uid, fingerprint, tuple(p for p in header["parties"] if p != self.party),
                          tuple(header["columns"]))

    def _reload(self) -> None:
        """After the link attested a (new) enclave: load every served TEE version into it."""
        for tee in list(self._tee.values()):
            self._load(tee.uid, tee.fingerprint)

    def _inline(self, version: str, features: Any, n: int) -> np.ndarray:
        tee = self._tee.get(version)
        if tee is None:
            return super()._inline(version, features, n)
        records = features if isinstance(features, list) else [features]
        if len(records) != n or not all(isinstance(r, dict) for r in records):
            raise DataError(f"send one record of features (column: value) per id ({n})", party=self.party,
                            step="serve: request")
        frame = pd.DataFrame.from_records(records)
        missing = [c for c in tee.columns if c not in frame.columns]
        if missing:
            raise DataError(f"the request lacks column {missing[0]!r}", party=self.party, column=missing[0],
                            step="serve: request")
        try:
            X = frame[list(tee.columns)].to_numpy(np.float64)
        except (ValueError, TypeError):
            raise DataError("features must be numbers", party=self.party, step="serve: request") from None
        if not np.isfinite(X).all():
            raise DataError("the features hold a missing or infinite value", party=self.party,
                            step="serve: request")
        return X

    async def _run(self, version: str, items: list[Item]) -> list[Any]:
        if version not in self._tee and version not in self._loaded:
            await self.use(version)
        if version not in self._tee:
            return await super()._run(version, items)
        tee = self._tee[version]
        ids = list(itertools.chain.from_iterable(it.ids for it in items))
        try:
            X, found = self._own_rows(items, ids, self._raw.get(version))
            batch = secrets.token_hex(16)
            status = await self._contributions(tee, batch, ids)
            scores = await asyncio.to_thread(self._enclave_score, tee, batch, ids, X)
        except SharedMLError as exc:
            for it in items:
                self.audit.record("score", it.ids, version=version, outcome=type(exc).__name__, party=exc.party)
            raise
        return self._split(version, items, ids, scores, found, status)

    async def _contributions(self, tee: TeeVersion, batch: str, ids: list[str]) -> dict[str, np.ndarray]:
        asks = []
        for p in tee.partners:
            client = self.partners[p]
            if not isinstance(client, TeePartnerClient):
                raise ConfigError(f"the gateway's client of {p!r} cannot ask for TEE contributions",
                                  party=self.party, step="serve: load")
            asks.append(client.contribute(tee.uid, batch, ids, self.settings.timeout))
        return dict(zip(tee.partners, await asyncio.gather(*asks), strict=True))

    def _enclave_score(self, tee: TeeVersion, batch: str, ids: list[str], X: np.ndarray) -> np.ndarray:
        header = {"version": tee.uid, "fingerprint": tee.fingerprint, "batch": batch, "ids": ids,
                  "columns": list(tee.columns)}
        _, body = self.link.call("Score", header, encode_matrix(X), timeout=self.settings.timeout)
        return decode_matrix(body, len(ids), 1, "enclave", STEP)[:, 0]

