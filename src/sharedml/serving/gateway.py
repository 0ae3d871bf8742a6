"""The label holder's scoring gateway, without its HTTP face (see :mod:`~sharedml.serving.app`).

Per request (or micro-batch of concurrent requests for one version):

1. Route: the request's version is the canary or the stable one
   (:mod:`~sharedml.serving.versions`); the version's part is already loaded
   and its partners' parts were checked to fit it when it was switched to.
2. Own features: the raw columns taken from the request, or looked up by id
   in the label holder's feature source, prepared by the pipeline it fitted
   in training (:mod:`~sharedml.serving.features`).
3. Ask every partner for its contribution to the batch's ids, concurrently,
   each under the request timeout (cache hits are not asked again, when the
   cache is on).
4. Combine (:mod:`~sharedml.serving.scoring`) and answer each request with
   its rows' scores; a row a party does not know or refuses fails its request
   with an error naming that party.
5. One audit line per request: hashed ids, version, outcome — never features
   or scores.

Reveals (per request, beyond the score the label holder computes):

* to the label holder (the gateway), from each partner ``k``, for every id
  it asks: linear models (SS-LR, HE-LR, SS linear regression served with
  ``reveal_weights: own``) — ``k``'s partial score ``x_k·w_k`` (with one
  partner the score's whole other half; the gateway can ask for any id it
  likes, so it can collect partial scores of chosen customers); SecureBoost
  — the side of every split record ``k`` owns (one bit per record: which of
  two threshold intervals of that feature the customer falls in, not the
  threshold or the feature's value), as FATE-Serving's host does. Also which
  ids ``k`` refused (allow-list) or does not know.
* to each partner: the version id, the ids asked and when (who the label
  holder is scoring), and nothing of the label holder's features or of the
  scores.
* to neither: the other's raw or prepared feature values, parameters or
  pipeline (tests/serving/test_serving_wire.py records the wire).

Security model: semi-honest parties; mutual TLS with the deployment's CA
(a partner answers only the label holders it is configured for); a
malicious gateway is bounded only by the partner's allow-list rule and its
audit log, not by cryptography.

References: FATE-Serving (WeBank), the guest/host split of online
inference; SecureBoost (Cheng et al., 2019), where a host resolves its own
split decisions.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from sharedml.errors import ChannelError, ConfigError, DataError, PolicyDenied, SharedMLError
from sharedml.modelpart.keys import NodeKeys
from sharedml.serving import wire
from sharedml.serving.adapters import FeatureAdapter
from sharedml.serving.audit import ServingAudit
from sharedml.serving.batcher import Item, MicroBatcher
from sharedml.serving.cache import RemoteCache
from sharedml.serving.features import PreparedFeatures
from sharedml.serving.parts import LabelPart, StoreParts
from sharedml.serving.remote import PartnerClient
from sharedml.serving.versions import Routing, load_routing, save_routing

log = logging.getLogger("sharedml.serving")
CACHE_FILE = "cache.sealed"


class UnknownRecord(DataError):
    """An id is not in a party's feature store."""


class RecordRefused(PolicyDenied):
    """A partner's allow-list does not admit an id."""


class RowSource(Protocol):
    """Own feature rows by id: :class:`PreparedFeatures`, or a TEE version's raw columns."""

    def fetch(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Scored:
    scores: np.ndarray
    version: str


@dataclass
class GatewaySettings:
    timeout: float = 1.0
    max_batch: int = 1024
    max_inflight: int = 4


class Gateway:
    def __init__(
        self,
        party: str,
        parts: StoreParts,
        partners: dict[str, PartnerClient],
        features: FeatureAdapter | None,
        state_dir: Path,
        audit: ServingAudit,
        key: NodeKeys,
        settings: GatewaySettings | None = None,
        cache: RemoteCache | None = None,
    ) -> None:
        self.party, self.parts, self.partners = party, parts, partners
        self.features, self.state_dir, self.audit, self.key = features, state_dir, audit, key
        self.settings = settings or GatewaySettings()
        self.cache = cache
        self.routing = Routing()
        self._loaded: dict[str, tuple[LabelPart, PreparedFeatures | None]] = {}
        self._batcher = MicroBatcher(self._run, self.settings.max_batch,
                                     self.settings.max_inflight)

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        """Serve the versions served before the last stop (partners checked if reachable)."""
        routing = load_routing(self.state_dir)
        for version in routing.versions():
            await self.use(version, strict=False)
        self.routing = routing
        if self.cache is not None:
            self.cache.load(self.state_dir / CACHE_FILE, self.key)

    async def close(self) -> None:
        if self.cache is not None:
            self.cache.save(self.state_dir / CACHE_FILE, self.key)
        for client in self.partners.values():
            await client.close()
        self.audit.close()

    # -- versions ------------------------------------------------------------------
    async def use(self, version: str, strict: bool = True) -> LabelPart:
        """Load this party's part of ``version`` (an id) and check each partner's fits it:
        same version, the registry's fingerprint, a matching shape."""
        if version in self._loaded:
            return self._loaded[version][0]
        part = self.parts.get(version)
        if not isinstance(part, LabelPart):
            raise ConfigError(f"{self.party!r} holds a feature part of {version!r}; the "
                              "gateway runs at the label holder", party=self.party,
                              step="serve: load")
        registered = self.parts.fingerprints(version)
        for p in part.partners:
            if p not in self.partners:
                raise ConfigError(f"version {version!r} needs party {p!r}, which this "
                                  "gateway has no address for", party=self.party,
                                  step="serve: load", remedy=f"pass --partner {p}=HOST:PORT")
            try:
                info = await self.partners[p].describe(version, self.settings.timeout * 5)
            except ChannelError as exc:
                if strict:
                    raise
                log.warning("serving %s without checking %s's part: %s", version, p, exc)
                continue
            problem = part.check_partner(info)
            if problem is None and registered.get(p, info.fingerprint) != info.fingerprint:
                problem = (f"its fingerprint {info.fingerprint[:16]}… is not the registry's "
                           f"{registered[p][:16]}…")
            if problem:
                raise ConfigError(f"party {p!r}'s part of {version!r} does not fit: {problem}",
                                  party=p, step="serve: load",
                                  remedy="install the part of the same training run")
        prepared = None
        if self.features is not None and part.pipeline is not None:
            prepared = PreparedFeatures(self.features, part.pipeline)
        self._loaded[version] = (part, prepared)
        return part

    async def change(self, action: str, version: str | None = None, percent: int = 0) -> Routing:
        """``serve`` (make stable), ``canary``, ``promote`` or ``rollback``; persisted."""
        now = self.routing
        if action in ("serve", "canary"):
            if version is None:
                raise ConfigError(f"{action} needs a version", step="serve: versions")
            version = self.parts.resolve(version)
            await self.use(version)
        if action == "serve":
            new = Routing(stable=version, previous=now.stable)
        elif action == "canary":
            new = now.with_canary(str(version), percent)
        elif action == "promote":
            new = now.promoted()
        elif action == "rollback":
            new = now.rolled_back()
        else:
            raise ConfigError(f"unknown version action {action!r}", step="serve: versions",
                              remedy="use serve, canary, promote or rollback")
        for v in new.versions():
            await self.use(v)
        save_routing(self.state_dir, new)
        self.routing = new
        self.audit.record("version", [], action=action, routing=asdict(new))
        return new

    # -- scoring -------------------------------------------------------------------
    async def score(self, ids: list[str], features: Any = None) -> Scored:
        version = self.routing.route(ids[0])
        if version is None:
            raise ConfigError("no model version is served yet", party=self.party,
                              step="serve: route",
                              remedy="sharedml serve version serve VERSION")
        X = None if features is None else self._inline(version, features, len(ids))
        scores = await self._batcher.submit(version, ids, X)
        return Scored(scores, version)

    def _inline(self, version: str, features: Any, n: int) -> np.ndarray:
        """Raw features sent with a request (a record of the schema's columns, or a
        list of records) as the model's features, through this party's pipeline."""
        part = self._loaded[version][0]
        records = features if isinstance(features, list) else [features]
        if len(records) != n or not all(isinstance(r, dict) for r in records):
            raise DataError(f"send one record of features (column: value) per id ({n})",
                            party=self.party, step="serve: request")
        if part.pipeline is None:
            raise DataError("this model version has no feature pipeline", party=self.party,
                            step="serve: request", remedy="look features up with --features")
        frame = pd.DataFrame.from_records(records)
        prepared = PreparedFeatures.transform_with(part.pipeline, frame, self.party)
        if not np.isfinite(prepared).all():
            raise DataError("the features hold a missing or infinite value the model's "
                            "pipeline does not fill", party=self.party, step="serve: request")
        return prepared

    async def _run(self, version: str, items: list[Item]) -> list[Any]:
        part, prepared = self._loaded[version]
        ids = list(itertools.chain.from_iterable(it.ids for it in items))
        try:
            X, found = self._own_rows(items, ids, prepared)
            answers, status = await self._ask(part, version, ids)
            scores = part.combine(X, answers)
        except SharedMLError as exc:
            for it in items:
                self.audit.record("score", it.ids, version=version,
                                  outcome=type(exc).__name__, party=exc.party)
            raise
        return self._split(version, items, ids, scores, found, status)

    def _own_rows(self, items: list[Item], ids: list[str],
                  prepared: RowSource | None) -> tuple[np.ndarray, np.ndarray]:
        if all(it.X is not None for it in items):
            rows = [it.X for it in items if it.X is not None]
            return np.vstack(rows), np.ones(len(ids), dtype=bool)
        if prepared is None:
            raise DataError("the request carries no features and this gateway has no "
                            "feature store", party=self.party, step="serve: features",
                            remedy="send 'features' or start the gateway with --features")
        X, found = prepared.fetch(ids)
        at = 0
        for it in items:
            if it.X is not None:
                X[at:at + len(it.ids)], found[at:at + len(it.ids)] = it.X, True
            at += len(it.ids)
        return X, found

    async def _ask(self, part: LabelPart, version: str,
                   ids: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        replies = await asyncio.gather(*(self._ask_one(p, version, ids) for p in part.partners))
        return ({p: r[0] for p, r in zip(part.partners, replies, strict=True)},
                {p: r[1] for p, r in zip(part.partners, replies, strict=True)})

    async def _ask_one(self, p: str, version: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        timeout = self.settings.timeout
        if self.cache is None:
            reply = await self.partners[p].score(version, ids, timeout)
            return reply.values, reply.status
        cached = self.cache.get(version, p, ids)
        miss = [i for i, c in enumerate(cached) if c is None]
        status = np.zeros(len(ids), dtype=np.uint8)
        if miss:
            reply = await self.partners[p].score(version, [ids[i] for i in miss], timeout)
            ok = reply.status == wire.OK
            self.cache.put(version, p, [ids[i] for i, good in zip(miss, ok, strict=True) if good],
                           reply.values[ok])
            status[miss] = reply.status
            template = reply.values[0]
        else:
            template = cached[0]
        values = np.zeros((len(ids), *np.shape(template)), dtype=np.asarray(template).dtype)
        for i, c in enumerate(cached):
            if c is not None:
                values[i] = c
        if miss:
            values[miss] = reply.values
        return values, status

    def _split(self, version: str, items: list[Item], ids: list[str], scores: np.ndarray,
               found: np.ndarray, status: dict[str, np.ndarray]) -> list[Any]:
        out: list[Any] = []
        at = 0
        for it in items:
            rows = slice(at, at + len(it.ids))
            at += len(it.ids)
            error = self._row_error(it.ids, found[rows], {p: s[rows] for p, s in status.items()})
            outcome = "ok" if error is None else type(error).__name__
            self.audit.record("score", it.ids, version=version, outcome=outcome,
                              party=None if error is None else error.party)
            out.append(scores[rows] if error is None else error)
        return out

    def _row_error(self, ids: list[str], found: np.ndarray,
                   status: dict[str, np.ndarray]) -> SharedMLError | None:
        if not found.all():
            bad = ids[int(np.argmin(found))]
            return UnknownRecord(f"id {bad!r} is not in {self.party!r}'s feature store",
                                 party=self.party, step="serve: features")
        for p, s in status.items():
            if (s == wire.REFUSED).any():
                bad = ids[int(np.argmax(s == wire.REFUSED))]
                return RecordRefused(f"party {p!r} refused id {bad!r} (outside its "
                                     "allow-list)", party=p, step="serve: score")
            if (s == wire.UNKNOWN).any():
                bad = ids[int(np.argmax(s == wire.UNKNOWN))]
                return UnknownRecord(f"id {bad!r} is unknown to party {p!r}", party=p,
                                     step="serve: score")
        return None
