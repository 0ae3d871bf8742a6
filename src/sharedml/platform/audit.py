"""The audit log (9.3): append-only and hash-chained.

Each entry ``n`` stores ``hash_n = SHA-256(hash_{n-1} || canonical_json(entry_n))``
where the entry is ``{seq, ts, actor, action, target, outcome, detail}``
(canonical JSON: sorted keys, no spaces, UTF-8) and ``hash_0`` is 64 zeros.
Every hashed field is stored as text, so the chain verifies the same on SQLite
and PostgreSQL and after a backup and restore.

:meth:`AuditLog.verify` walks the chain and names the first bad entry:

- an edited entry: its recomputed hash differs from the stored one;
- a deleted entry: a gap in ``seq`` (and the next entry's ``prev_hash`` no
  longer matches);
- reordered entries: ``prev_hash`` no longer links to the entry before.

Anyone who may write the database can rewrite an entry and recompute every
later hash, or cut the tail, and the chain alone still verifies. So each entry
also carries a keyed MAC (``audit_mac.py``: HMAC-SHA256 under a key derived
from ``platform.key``), which a rewrite without the key cannot reproduce; and
parties keep the platform's signed checkpoints (``audit_checkpoints.py``; nodes
are sent them) and verify against them, which catches a cut tail and MACs
stripped; a head hash noted earlier (``--head`` in the CLI) must still be in
the chain, however much it grew since.

Entries never carry secrets: no passwords, TOTP codes or tokens.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sharedml.errors import SharedMLError
from sharedml.platform.audit_checkpoints import Checkpoint, against
from sharedml.platform.audit_mac import REKEY, AuditMac, MacWalk
from sharedml.platform.clock import Clock
from sharedml.platform.store import Store
from sharedml.platform.store.models import AuditEntry

GENESIS = "0" * 64
#: PostgreSQL advisory lock id serialising appends to the chain (any process).
ADVISORY_KEY = 0x5348_4D4C_4155_4454 & 0x7FFF_FFFF_FFFF_FFFF
_FIELDS = ("seq", "ts", "actor", "action", "target", "outcome", "detail")


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    body = canonical({k: fields[k] for k in _FIELDS})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def entry_dict(e: AuditEntry) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "ts": e.ts,
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "outcome": e.outcome,
        "detail": e.detail,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
        "mac": e.mac,
    }


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    head: str
    first_bad_seq: int | None = None
    reason: str = ""


class AuditLog:
    """Append to, query, verify and export the chain; with ``mac``, every new entry
    carries its MAC and :meth:`verify` checks them."""

    def __init__(self, store: Store, clock: Clock, mac: AuditMac | None = None) -> None:
        self._store = store
        self._clock = clock
        self._mac = mac
        self._lock = threading.Lock()

    def append(
        self,
        actor: str,
        action: str,
        target: str = "",
        *,
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Add one entry at the head of the chain (serialised; retried on a race)."""

        def add() -> AuditEntry:
            with self._store.session() as s:
                return self._add(s, actor, action, target, outcome, detail or {})

        return self._retried(add)

    def append_in(
        self,
        s: Session,
        actor: str,
        action: str,
        target: str = "",
        *,
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Add an entry inside the caller's transaction: it commits (or not) with the operation."""

        def add() -> AuditEntry:
            with s.begin_nested():
                return self._add(s, actor, action, target, outcome, detail or {})

        return self._retried(add)

    def _retried(self, add: Callable[[], AuditEntry]) -> AuditEntry:
        """Run ``add`` under the lock; on a race for the next seq, read the new head and retry."""
        # SQLite: the store's writer lock (sessions take it) serialises whole
        # transactions; then this log's. PostgreSQL: no Python lock — a thread holding
        # one while the database made it wait for another transaction's commit, which
        # itself waited for that lock, hung every writer (bench/load.py); the
        # transaction-scoped advisory lock in _add serialises appends in the database.
        sqlite = self._store.dialect == "sqlite"
        for _ in range(20):
            with self._store.writer(), (self._lock if sqlite else nullcontext()):
                try:
                    return add()
                except IntegrityError:
                    continue  # another process took this seq; read the new head and retry
        raise SharedMLError("could not append to the audit log", remedy="retry the operation")

    def _add(
        self, s: Session, actor: str, action: str, target: str, outcome: str, detail: dict[str, Any]
    ) -> AuditEntry:
        if self._store.dialect == "postgresql":  # held to this transaction's end
            s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_KEY})
        head = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).first()
        seq = (head.seq + 1) if head else 1
        fields = {
            "seq": seq,
            "ts": self._clock.now().isoformat(),
            "actor": actor,
            "action": action,
            "target": target,
            "outcome": outcome,
            "detail": canonical(detail),
        }
        prev = head.hash if head else GENESIS
        digest = entry_hash(prev, fields)
        mac = self._mac.tag(seq, digest) if self._mac else None
        entry = AuditEntry(**fields, prev_hash=prev, hash=digest, mac=mac)
        s.add(entry)
        s.flush()
        return entry

    def query(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[AuditEntry]:
        stmt = select(AuditEntry).where(AuditEntry.seq > after_seq)
        if actor:
            stmt = stmt.where(AuditEntry.actor == actor)
        if action:
            stmt = stmt.where(AuditEntry.action.startswith(action))
        with self._store.session() as s:
            return list(s.scalars(stmt.order_by(AuditEntry.seq).limit(limit)).all())

    def count(self) -> int:
        with self._store.session() as s:
            return int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0)

    def _iter(self, batch: int = 1000) -> Iterator[AuditEntry]:
        after = 0
        while True:
            with self._store.session() as s:
                rows = s.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.seq > after)
                    .order_by(AuditEntry.seq)
                    .limit(batch)
                ).all()
            if not rows:
                return
            yield from rows
            after = rows[-1].seq

    def head(self) -> tuple[int, str]:
        """The newest entry's ``(seq, hash)``; ``(0, GENESIS)`` for an empty log."""
        with self._store.reading() as s:
            e = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).first()
            return (e.seq, e.hash) if e else (0, GENESIS)

    def mac_from(self) -> int:
        """The first entry that carries a MAC (0: none yet), as checkpoints sign it."""
        with self._store.reading() as s:
            first = s.scalar(select(func.min(AuditEntry.seq)).where(AuditEntry.mac.is_not(None)))
            return int(first or 0)

    def verify(self, kept: list[Checkpoint] | None = None, public_pem: str = "",
               seen: str | None = None) -> Verification:
        """Walk the chain; the first entry that does not check out is named, its MAC
        included (this log's key). With ``kept`` (checkpoints signed with
        ``public_pem``), also against them; with ``seen`` (a head hash read earlier),
        the chain must still hold that entry."""
        return _walk((entry_dict(e) for e in self._iter()), kept or [], public_pem, seen,
                     MacWalk(self._mac))

    def rekey(self, actor: str, reason: str) -> Verification:
        """After a restore under a new platform key: check the chain without MACs and,
        if it holds, append an ``audit.rekey`` entry whose MAC (new key) covers it."""
        v = _walk((entry_dict(e) for e in self._iter()), [], "", None, MacWalk(None))
        if not v.ok:
            return v
        self.append(actor, REKEY, "audit_log", detail={"reason": reason, "unchecked": v.entries})
        return self.verify()

    def export(self) -> Iterator[str]:
        """The whole chain as JSON lines, oldest first (each line verifiable on its own)."""
        for e in self._iter():
            yield canonical(entry_dict(e))


def verify_lines(lines: Iterable[str], kept: list[Checkpoint] | None = None,
                 public_pem: str = "", seen: str | None = None) -> Verification:
    """Verify an exported chain (JSON lines) without a database; as :meth:`AuditLog.verify`,
    but without the audit key: MACs are checked for presence only."""
    entries = (json.loads(line) for line in lines if line.strip())
    return _walk(entries, kept or [], public_pem, seen, MacWalk(None))


def _walk(entries: Iterable[dict[str, Any]], kept: list[Checkpoint], public_pem: str,
          seen: str | None, macs: MacWalk) -> Verification:
    prev, expected, n = GENESIS, 1, 0
    wanted = {c.seq for c in kept}
    hashes: dict[int, str] = {}
    found = seen is None or seen == GENESIS
    for fields in entries:
        seq = fields.get("seq")
        if seq != expected:
            return Verification(False, n, prev, seq, f"entry {expected} is missing (next is {seq})")
        if fields.get("prev_hash") != prev:
            return Verification(False, n, prev, seq, f"entry {seq} does not link to entry {seq - 1}")
        if entry_hash(prev, fields) != fields.get("hash"):
            return Verification(False, n, prev, seq, f"entry {seq} was altered")
        why = macs.see(seq, fields["hash"], fields.get("mac"), str(fields.get("action")))
        if why:
            return Verification(False, n, prev, seq, why)
        prev, expected, n = fields["hash"], expected + 1, n + 1
        found = found or prev == seen
        if seq in wanted:
            hashes[seq] = prev
    bad, why = macs.end()
    if bad:
        return Verification(False, n, prev, bad, why)
    if not found:
        return Verification(False, n, prev, None,
                            f"no entry has the head hash {seen} seen earlier: the log was cut "
                            "or rewritten")
    v = against(Verification(True, n, prev), hashes, kept, public_pem) if kept else \
        Verification(True, n, prev)
    bad, why = macs.against(((c.mac_from, c.ts) for c in kept), n) if v.ok else (0, "")
    return Verification(False, n, prev, bad, why) if bad else v
