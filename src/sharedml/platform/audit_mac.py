"""A keyed MAC on every audit entry: a rewrite needs the platform's key (9.3).

The chain (``audit.py``) is public SHA-256: anyone who may write the database
can edit entry ``k`` and recompute every later hash, and the chain still
verifies. Each entry written since revision 0007 also carries

    mac_n = HMAC-SHA256(K, "sharedml/audit/mac/v1\\n" || seq_n || "\\n" || hash_n)

where ``K`` is derived (HKDF-SHA256, purpose ``sharedml audit mac``) from the
platform's at-rest key ``DATA_DIR/platform.key`` (0600; a backup carries it
sealed under the operator's passphrase, like the checkpoint key). ``hash_n``
covers every entry before ``n``, so one valid MAC vouches for the whole
prefix behind it.

Steps:

1. On append, the platform computes ``mac_n`` in the entry's own transaction.
2. A verifier holding ``K`` (the platform: ``sharedml audit verify``,
   ``GET /api/v1/audit/verify``) checks every MAC, except those before an
   ``audit.rekey`` entry whose own MAC verifies: a platform restored with a new
   key (``platform restore --new-key``) checks the chain by hash, then writes
   that entry, whose MAC covers every hash before it.
3. Any verifier (with or without ``K``) checks *presence*: the entries with a
   MAC form a suffix of the chain (the entries written before the migration
   come first, without one), and every entry from a kept checkpoint's
   ``mac_from`` on has one (a checkpoint signs the first entry with a MAC).

Reveals: nothing beyond the chain; a MAC is a keyed hash of a public hash.

Security model: the MAC key is as safe as ``platform.key``, which the
operator holds; a database writer without it cannot make a valid MAC, so
rewriting any entry and rehashing fails step 2 at the first rewritten entry
that has a MAC. Stripping the MACs and rewriting is caught by step 3 as soon
as the verifier holds one checkpoint signed after the migration (nodes keep
them: ``node/checkpoints.py``); with none, a log stripped of *every* MAC
looks like a log from before the migration. Entries from before the
migration are protected by the chain, by the first MAC after them (it covers
their hashes) and by checkpoints. Cutting the tail is caught by checkpoints
only.

References: RFC 2104 (HMAC); RFC 5869 (HKDF); Schneier & Kelsey, "Secure
audit logs to support computer forensics" (ACM TISSEC 1999) — keyed per-entry
authenticators on a hash chain.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

#: The HKDF purpose of the MAC key (``SecretBox.derive``).
PURPOSE = "sharedml audit mac"
#: The action of the entry after which MACs are checked under a new key.
REKEY = "audit.rekey"
_LABEL = b"sharedml/audit/mac/v1\n"


class AuditMac:
    """HMAC-SHA256 tags of audit entries under the platform's derived key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the audit MAC key must have at least 32 bytes")
        self._key = key

    def tag(self, seq: int, entry_hash: str) -> str:
        msg = _LABEL + f"{seq}\n{entry_hash}".encode("ascii")
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def check(self, seq: int, entry_hash: str, tag: str) -> bool:
        return hmac.compare_digest(self.tag(seq, entry_hash), tag)


@dataclass
class MacWalk:
    """The MAC rules of a chain walk, fed one entry at a time (``audit._walk``)."""

    mac: AuditMac | None
    #: The first entry that carries a MAC (0: none yet).
    first: int = 0
    #: The first entry whose MAC failed since the last verified rekey (0: none).
    failed: int = 0

    def see(self, seq: int, entry_hash: str, tag: str | None, action: str = "") -> str:
        """Why entry ``seq`` breaks the presence rule, or ``""``; a failed MAC is held
        until :meth:`end` (a later verified :data:`REKEY` entry vouches for it)."""
        if not tag:
            if self.first:
                return (f"entry {seq} carries no MAC though entry {self.first} before it does: "
                        "MACs were stripped")
            return ""
        self.first = self.first or seq
        if self.mac is None:
            return ""
        if self.mac.check(seq, entry_hash, tag):
            if action == REKEY:
                self.failed = 0
        elif not self.failed:
            self.failed = seq
        return ""

    def end(self) -> tuple[int, str]:
        """``(seq, why)`` of the first MAC that failed and no rekey vouches for."""
        if not self.failed:
            return 0, ""
        return self.failed, (f"entry {self.failed}'s MAC does not verify: it was written or "
                             "rewritten without the platform's audit key")

    def against(self, mac_froms: Iterable[tuple[int, str]], entries: int) -> tuple[int, str]:
        """``(seq, why)`` of the first kept checkpoint's ``mac_from`` the chain breaks:
        every entry from it on must carry a MAC; ``(0, "")`` if none."""
        for mac_from, ts in sorted(mac_froms):
            if mac_from and mac_from <= entries and not (self.first and self.first <= mac_from):
                return mac_from, (f"entry {mac_from} carries no MAC, but the checkpoint of "
                                  f"{ts} signed that MACs start there: MACs were stripped")
        return 0, ""
