"""Issue 14: a keyed MAC on every audit entry (9.3), on a real SQLite platform.

Someone who may write the database but does not hold ``platform.key`` rewrites
an entry and recomputes every later hash: the platform's verification names
the rewritten entry. Stripping the MACs is caught by their order, or by a kept
checkpoint (it signs where MACs start). A log from before revision 0007 keeps
its entries without MACs and verifies; the first MAC after them covers them.
"""

from __future__ import annotations

from pathlib import Path

from platform_world import World, make_world
from sqlalchemy import select, text, update

from sharedml.platform.audit import GENESIS, AuditLog, entry_hash, verify_lines
from sharedml.platform.audit_checkpoints import CheckpointSigner
from sharedml.platform.audit_mac import AuditMac
from sharedml.platform.clock import ManualClock
from sharedml.platform.service import Platform
from sharedml.platform.store import Store, sqlite_url
from sharedml.platform.store.models import AuditEntry


def rewrite(store: Store, seq: int, actor: str) -> None:
    """Edit entry ``seq``'s actor, then recompute every hash from there (MACs untouched)."""
    with store.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.seq >= seq)
                         .order_by(AuditEntry.seq)).all()
        prev = s.scalar(select(AuditEntry.hash).where(AuditEntry.seq == seq - 1)) or GENESIS
        for e in rows:  # unique hashes: clear them first
            e.hash = f"tmp{e.seq}"
        s.flush()
        for e in rows:
            if e.seq == seq:
                e.actor = actor
            fields = {k: getattr(e, k) for k in
                      ("seq", "ts", "actor", "action", "target", "outcome", "detail")}
            e.prev_hash, e.hash = prev, entry_hash(prev, fields)
            prev = e.hash


def strip(store: Store, from_seq: int) -> None:
    with store.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq >= from_seq).values(mac=None))


def test_every_entry_carries_a_mac_and_a_rewrite_without_the_key_is_named(
    world: World,
) -> None:
    p = world.platform
    for i in range(3):
        p.audit.append("admin", "settings.change", str(i))
    with p.store.reading() as s:
        macs = s.execute(select(AuditEntry.seq, AuditEntry.hash, AuditEntry.mac)).all()
    assert macs and all(m and len(m) == 64 for _, _, m in macs)
    assert p.audit.verify().ok
    rewrite(p.store, 3, "mallory")
    assert verify_lines(list(p.audit.export())).ok  # the chain alone cannot tell
    v = p.audit.verify()
    assert not v.ok and v.first_bad_seq == 3 and "MAC does not verify" in v.reason, v
    # the same log under another platform's key: no entry verifies
    other = AuditLog(p.store, ManualClock(), AuditMac(b"k" * 32))
    assert other.verify().first_bad_seq == 1


def test_stripped_macs_are_caught_by_order_and_by_a_kept_checkpoint(world: World) -> None:
    p = world.platform
    signer: CheckpointSigner = p.checkpoints
    kept = signer.current(p.audit, "t0")
    assert kept.mac_from == 1  # a platform made today MACs from its first entry
    for who in ("x", "y"):  # after the checkpoint: the chain and MACs protect these
        p.audit.append("admin", "settings.change", who)
    n = p.audit.head()[0]
    assert n == kept.seq + 2
    # strip the head's MAC and rewrite it: the MAC'd entry before it gives it away
    strip(p.store, n)
    rewrite(p.store, n, "mallory")
    v = p.audit.verify()
    assert not v.ok and v.first_bad_seq == n and "MACs were stripped" in v.reason
    # strip every MAC: it looks like a log from before MACs, unless a checkpoint says not
    strip(p.store, 1)
    assert p.audit.verify().ok
    v = p.audit.verify([kept], signer.public_pem())
    assert not v.ok and v.first_bad_seq == 1 and "MACs were stripped" in v.reason, v
    v = verify_lines(list(p.audit.export()), [kept], signer.public_pem())  # without the key
    assert not v.ok and "MACs were stripped" in v.reason


def test_a_log_from_before_the_migration_keeps_its_entries_and_gains_macs(
    tmp_path: Path,
) -> None:
    store = Store(sqlite_url(tmp_path))
    store.upgrade("0006")
    prev = GENESIS
    with store.engine.begin() as conn:  # three entries as revision 0006 wrote them
        for seq in (1, 2, 3):
            fields = {"seq": seq, "ts": f"2026-12-0{seq}T00:00:00+00:00", "actor": "admin",
                      "action": "user.create", "target": f"u{seq}", "outcome": "ok",
                      "detail": "{}"}
            digest = entry_hash(prev, fields)
            conn.execute(text("INSERT INTO audit_log VALUES (:seq, :ts, :actor, :action, "
                              ":target, :outcome, :detail, :prev, :hash)"),
                         {**fields, "prev": prev, "hash": digest})
            prev = digest
    store.dispose()
    p = Platform.open(tmp_path, clock=ManualClock())  # migrates to 0007
    p.audit.append("admin", "settings.change", "after")
    with p.store.reading() as s:
        macs = {seq: mac for seq, mac in s.execute(select(AuditEntry.seq, AuditEntry.mac))}
    assert [seq for seq, mac in sorted(macs.items()) if mac] == [4]
    assert p.audit.verify().ok and p.audit.mac_from() == 4
    c = p.checkpoints.current(p.audit, "t")
    assert (c.seq, c.mac_from) == (4, 4)
    assert p.audit.verify([c], p.checkpoints.public_pem()).ok
    # a rewritten old entry, rehashed: the first MAC after it covers its hash
    rewrite(p.store, 2, "mallory")
    v = p.audit.verify()
    assert not v.ok and v.first_bad_seq == 4 and "MAC does not verify" in v.reason, v


def test_a_restored_backup_verifies_with_the_key_it_carries(tmp_path: Path) -> None:
    """The MAC key is derived from platform.key: the same key file, the same MACs."""
    world = make_world(tmp_path / "a")
    p = world.platform
    key = (p.data_dir / "platform.key").read_bytes()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "platform.key").write_bytes(key)
    again = Platform(p.store, tmp_path / "b", clock=ManualClock())
    assert again.audit.verify().ok and again.audit.verify().entries == p.audit.count()


def test_a_restore_under_a_new_key_rekeys_once_and_still_catches_a_rewrite(
    tmp_path: Path,
) -> None:
    """``platform restore --new-key``: the old MACs cannot be checked; the chain is
    checked by hash and an ``audit.rekey`` entry's MAC (new key) covers it."""
    world = make_world(tmp_path / "a")
    p = world.platform
    (tmp_path / "b").mkdir()  # a new host whose platform.key is new
    again = Platform(p.store, tmp_path / "b", clock=ManualClock())
    v = again.audit.verify()
    assert not v.ok and v.first_bad_seq == 1 and "MAC does not verify" in v.reason
    n = p.audit.count()
    assert again.audit.rekey("cli", "restored with a new platform key").ok
    (entry,) = again.audit.query(action="audit.rekey")
    assert entry.seq == n + 1 and '"unchecked":' + str(n) in entry.detail
    again.audit.append("admin", "settings.change", "after")
    assert again.audit.verify().ok
    rewrite(p.store, 2, "mallory")  # before the rekey: the rekey entry's MAC covers it
    v = again.audit.verify()  # (no valid rekey now: the first old-key MAC is named)
    assert not v.ok and v.first_bad_seq == 1 and "MAC does not verify" in v.reason, v
