"""The attestation seam: evidence, claims, reference values and one verification path.

Every backend (``sim``, ``nitro``, ``dcap``) implements :class:`Backend.appraise`:
check the evidence's signature and certificate chain up to *its* trust anchor
and its collateral (TCB, revocation), and return the :class:`Claims` the
evidence makes. Everything after that is the same for every backend and lives
here, in :meth:`Verifier.verify`:

1. size limit, then ``appraise`` (signature, chain to the pinned root, validity
   at ``now``, TCB status, revocation);
2. reference values: the measurement is allowed, or signer + product id +
   security version at or above the floor; debug and simulated enclaves are
   refused unless the policy allows them;
3. freshness: the evidence carries the nonce this verifier issued (once, and
   not too long ago) and was issued within ``max_age`` of ``now``;
4. key binding: the evidence binds the public key the enclave presents
   (``public_key`` field, or ``report_data = SHA-512(domain || nonce || key)``).

A failure raises one opaque :class:`~sharedml.errors.AttestationError`; the
reason is logged with a reference id and kept on ``exc.reason`` for the local
caller (tests, audit), never sent to the peer.

Reveals: the evidence reveals the enclave's measurement, signer, versions and
platform TCB to whoever verifies it; the verifier's nonce is public.
"""

from __future__ import annotations

import abc
import base64
import datetime as dt
import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sharedml.errors import AttestationError, ConfigError, PolicyDenied

log = logging.getLogger("sharedml.tee.attestation")

#: Domain separator of the report-data binding (SGX/TDX/sim): 64 bytes of SHA-512.
BINDING_DOMAIN = b"sharedml-tee-binding/1"
DEFAULT_MAX_EVIDENCE = 256 * 1024


def report_data_for(nonce: bytes, public_key: bytes) -> bytes:
    """The 64-byte report data that binds ``public_key`` to the verifier's ``nonce``."""
    h = hashlib.sha512()
    for part in (BINDING_DOMAIN, nonce, public_key):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def reject(reason: str, detail: str = "", *, party: str | None = None) -> AttestationError:
    """Build the opaque error; log the reason and detail under a reference id."""
    ref = secrets.token_hex(4)
    log.warning("attestation rejected [%s] reason=%s %s", ref, reason, detail)
    exc = AttestationError(
        f"attestation evidence rejected (ref {ref})",
        party=party,
        step="attest",
        remedy="check the enclave build against the reference values and retry with a fresh nonce",
    )
    exc.reason = reason  # type: ignore[attr-defined]
    return exc


@dataclass(frozen=True)
class Evidence:
    """Raw evidence from one backend, plus the collateral it needs (DCAP)."""

    backend: str
    document: bytes
    collateral: bytes = b""

    def to_json(self) -> str:
        return json.dumps(
            {
                "backend": self.backend,
                "document": base64.b64encode(self.document).decode(),
                "collateral": base64.b64encode(self.collateral).decode(),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Evidence:
        try:
            raw = json.loads(text)
            return cls(
                str(raw["backend"]),
                base64.b64decode(raw["document"], validate=True),
                base64.b64decode(raw.get("collateral", ""), validate=True),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise reject("malformed", f"evidence envelope: {exc}") from None


@dataclass(frozen=True)
class Claims:
    """What verified evidence says about the enclave (all byte values as issued)."""

    backend: str
    measurement: str
    signer: str | None = None
    product_id: int | None = None
    svn: int | None = None
    debug: bool = False
    simulated: bool = False
    public_key: bytes | None = None
    nonce: bytes | None = None
    user_data: bytes | None = None
    report_data: bytes | None = None
    issued_at: dt.datetime | None = None
    tcb_status: str = "UpToDate"
    extra: Mapping[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        """A JSON-friendly view (for the CLI and the audit log)."""
        return {
            "backend": self.backend,
            "measurement": self.measurement,
            "signer": self.signer,
            "product_id": self.product_id,
            "svn": self.svn,
            "debug": self.debug,
            "simulated": self.simulated,
            "tcb_status": self.tcb_status,
            "issued_at": self.issued_at.isoformat() if self.issued_at else None,
            "report_data": self.report_data.hex() if self.report_data else None,
            **dict(self.extra),
        }


class VersionFloor:
    """A minimum security version that only rises (anti-rollback).

    Persisted to ``path`` when given, so a restart cannot lower it.
    """

    def __init__(self, value: int = 0, path: str | Path | None = None) -> None:
        self._path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        stored = 0
        if self._path is not None and self._path.exists():
            stored = int(self._path.read_text().strip() or 0)
        self._value = max(value, stored)
        self._save()

    @property
    def value(self) -> int:
        return self._value

    def raise_to(self, value: int) -> None:
        """Raise the floor; lowering it is refused."""
        with self._lock:
            if value < self._value:
                raise PolicyDenied(
                    f"version floor is {self._value}; refusing to lower it to {value}",
                    step="upgrade",
                    remedy="anti-rollback: deploy a version at or above the floor",
                )
            self._value = value
            self._save()

    def _save(self) -> None:
        if self._path is not None:
            self._path.write_text(str(self._value))


@dataclass(frozen=True)
class Policy:
    """Reference values an enclave must match.

    Either ``measurements`` (exact builds) or ``signer`` + ``product_id`` +
    ``min_svn`` (any build of that product by that signer at or above the
    version; the effective minimum is the larger of ``min_svn`` and ``floor``).
    """

    measurements: frozenset[str] = frozenset()
    signer: str | None = None
    product_id: int | None = None
    min_svn: int = 0
    floor: VersionFloor | None = None
    allow_debug: bool = False
    allow_simulation: bool = False
    tcb_statuses: frozenset[str] = frozenset({"UpToDate"})
    max_age: dt.timedelta = dt.timedelta(minutes=5)
    max_skew: dt.timedelta = dt.timedelta(seconds=30)
    max_evidence_bytes: int = DEFAULT_MAX_EVIDENCE

    def __post_init__(self) -> None:
        object.__setattr__(self, "measurements", frozenset(m.lower() for m in self.measurements))
        object.__setattr__(self, "tcb_statuses", frozenset(self.tcb_statuses))
        if not self.measurements and self.signer is None:
            raise ConfigError(
                "an attestation policy must name allowed measurements or a signer",
                step="attest",
                remedy="set Policy(measurements=...) or Policy(signer=..., product_id=..., min_svn=...)",
            )
        if self.signer is not None and self.product_id is None:
            raise ConfigError("a signer policy also needs product_id", step="attest")

    @property
    def effective_min_svn(self) -> int:
        return max(self.min_svn, self.floor.value if self.floor is not None else 0)

    def check(self, claims: Claims) -> None:
        """Raise the opaque error unless ``claims`` meet these reference values."""
        if claims.simulated and not self.allow_simulation:
            raise reject("simulation", "simulated evidence while simulation is not enabled")
        if claims.debug and not self.allow_debug:
            raise reject("debug", f"debug enclave {claims.measurement[:16]}…")
        if claims.tcb_status not in self.tcb_statuses:
            raise reject("tcb", f"TCB status {claims.tcb_status!r} not in {sorted(self.tcb_statuses)}")
        if claims.svn is not None and claims.svn < self.effective_min_svn:
            raise reject("version", f"svn {claims.svn} below floor {self.effective_min_svn}")
        if self.measurements and claims.measurement.lower() in self.measurements:
            return
        if self.signer is None:
            raise reject("measurement", f"measurement {claims.measurement} not allowed")
        if claims.signer is None or claims.signer.lower() != self.signer.lower():
            raise reject("signer", f"signer {claims.signer} is not {self.signer}")
        if claims.product_id != self.product_id:
            raise reject("product", f"product {claims.product_id} is not {self.product_id}")
        if claims.svn is None or claims.svn < self.effective_min_svn:
            raise reject("version", f"svn {claims.svn} below floor {self.effective_min_svn}")


class Backend(abc.ABC):
    """Checks one evidence format up to its trust anchor."""

    name: str

    @abc.abstractmethod
    def appraise(self, evidence: Evidence, now: dt.datetime) -> Claims:
        """Verify signature, chain and collateral at ``now``; return the claims."""


class Attester(abc.ABC):
    """Produces evidence binding the enclave's measurement, a public key and a nonce."""

    backend: str

    @abc.abstractmethod
    def attest(self, nonce: bytes, public_key: bytes, user_data: bytes = b"") -> Evidence:
        """Evidence for ``public_key`` (born inside the enclave) and ``nonce``."""


class Verifier:
    """The one verification path; only the backends (trust anchors) differ.

    ``challenge()`` issues a nonce good for one ``verify`` within ``nonce_ttl``.
    """

    def __init__(
        self,
        backends: Iterable[Backend],
        *,
        nonce_ttl: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        self._backends = {b.name: b for b in backends}
        self._nonces: dict[bytes, dt.datetime] = {}
        self._ttl = nonce_ttl
        self._lock = threading.Lock()

    def challenge(self, now: dt.datetime | None = None, nonce: bytes | None = None) -> bytes:
        """A fresh 32-byte nonce (or register ``nonce`` chosen elsewhere) for one ``verify``."""
        nonce = secrets.token_bytes(32) if nonce is None else nonce
        when = _now(now)
        with self._lock:
            for old in [n for n, t in self._nonces.items() if when - t > self._ttl]:
                del self._nonces[old]  # unused challenges do not pile up
            self._nonces[nonce] = when
        return nonce

    def claims_of(self, evidence: Evidence, now: dt.datetime | None = None) -> Claims:
        """Step 1 only: what evidence that verifies to a trusted root says (for learning one's own claims)."""
        backend = self._backends.get(evidence.backend)
        if backend is None:
            raise reject("backend", f"no trust anchor configured for {evidence.backend!r}")
        return backend.appraise(evidence, _now(now))

    def appraise(self, evidence: Evidence, policy: Policy, now: dt.datetime | None = None) -> Claims:
        """Steps 1-2 only: signature, chain, collateral and reference values (no freshness)."""
        when = _now(now)
        size = len(evidence.document) + len(evidence.collateral)
        if size > policy.max_evidence_bytes:
            raise reject("size", f"{size} bytes > {policy.max_evidence_bytes}")
        backend = self._backends.get(evidence.backend)
        if backend is None:
            raise reject("backend", f"no trust anchor configured for {evidence.backend!r}")
        try:
            claims = backend.appraise(evidence, when)
        except AttestationError:
            raise
        except Exception as exc:  # a parser choking on hostile input is a rejection
            raise reject("malformed", f"{type(exc).__name__}: {exc}") from None
        policy.check(claims)
        return claims

    def verify(
        self,
        evidence: Evidence,
        policy: Policy,
        *,
        nonce: bytes,
        public_key: bytes,
        now: dt.datetime | None = None,
    ) -> Claims:
        """All four steps; returns the claims of evidence that passed."""
        when = _now(now)
        with self._lock:
            issued = self._nonces.pop(nonce, None)
        if issued is None:
            raise reject("nonce", "nonce was not issued by this verifier or was already used")
        if when - issued > self._ttl:
            raise reject("nonce", "nonce expired")
        claims = self.appraise(evidence, policy, when)
        if claims.issued_at is not None:
            if claims.issued_at > when + policy.max_skew:
                raise reject("time", f"evidence issued in the future ({claims.issued_at})")
            if when - claims.issued_at > policy.max_age:
                raise reject("time", f"evidence too old ({claims.issued_at})")
        if claims.nonce is not None:
            if not secrets.compare_digest(claims.nonce, nonce):
                raise reject("nonce", "evidence carries another nonce (stale or replayed)")
            if claims.public_key is None or not secrets.compare_digest(claims.public_key, public_key):
                raise reject("binding", "evidence does not carry the presented key")
        elif claims.report_data is None or not secrets.compare_digest(
            claims.report_data, report_data_for(nonce, public_key)
        ):
            raise reject("binding", "report data does not bind this nonce and key")
        log.info("attestation accepted: %s", claims.summary())
        return claims


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)
