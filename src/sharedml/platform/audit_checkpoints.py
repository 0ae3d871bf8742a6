"""Signed checkpoints of the audit chain: what makes a rewrite or a cut tail show (9.3).

The chain alone (``audit.py``) is a public SHA-256 chain: anyone holding an
export can recompute it, and so can anyone who may write the database — the
probe rewrote an entry's actor, recomputed every later hash, and the log still
"verified"; cutting the tail left a shorter valid chain. A checkpoint is the
platform's Ed25519 signature over ``{seq, head, ts}``: the hash of entry ``seq``
at time ``ts``. Nodes' owners and auditors keep the checkpoints they are given
(``sharedml audit checkpoint --save``); a chain verifies against a kept
checkpoint only if entry ``seq`` still exists and still has that hash, so a
rewrite of any entry up to ``seq`` (every later hash changes) and a cut below
``seq`` are both caught, by a party that does not trust the platform's
operator.

Steps:

1. The signing key is derived (HKDF-SHA256, purpose ``sharedml audit checkpoint``)
   from the platform's at-rest key (``DATA_DIR/platform.key``): one secret to keep,
   and a restored backup (which needs that key anyway) signs on.
2. The platform signs the current head on request (``GET /api/v1/audit/checkpoint``,
   any signed-in user) and every ``PERIOD_S`` while serving, recording the latter
   as an ``audit.checkpoint`` entry (so the log itself lists what was published);
   and it sends every node the head signed at most ``PUSH_S`` ago in each
   heartbeat reply (:class:`CheckpointFeed`), which the node keeps
   (``node/checkpoints.py``: it refuses a head that goes backwards or forks).
3. A verifier checks each kept checkpoint's signature with the platform's public key
   (pinned when the first checkpoint was saved), then the chain against it.

Reveals: to any signed-in user, the number of audit entries and the head hash
(no entry's content). Security model: the signing key is as safe as
``platform.key``; whoever holds it (the platform's operator) can re-sign a
rewritten chain, but not un-publish a checkpoint a party already keeps, so a
rewrite of anything a party has a checkpoint for is caught. Entries after the
newest checkpoint a party holds are protected by the chain only until the next
checkpoint (at most ``PERIOD_S``).

References: Crosby & Wallach, "Efficient Data Structures for Tamper-Evident
Logging" (USENIX Security 2009) — signed commitments to a hash chain's head;
RFC 8032 (Ed25519); RFC 5869 (HKDF).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sharedml.checkpoints import PURPOSE, Checkpoint, check_signature, keep, load_kept
from sharedml.errors import ConfigError

if TYPE_CHECKING:
    from threading import Event

    from sharedml.platform.audit import AuditLog, Verification
    from sharedml.platform.clock import Clock

log_ = logging.getLogger("sharedml.platform.audit")

#: How often a serving platform records a signed checkpoint (when the log grew).
PERIOD_S = 60.0
#: How often the head is signed again for the nodes' heartbeat replies.
PUSH_S = 10.0

__all__ = ["PURPOSE", "Checkpoint", "CheckpointFeed", "CheckpointSigner", "against", "audit_key",
           "check_signature", "keep", "load_kept", "publish_every"]


class CheckpointSigner:
    """Signs checkpoints with the key derived from the platform's at-rest key."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)

    def public_pem(self) -> str:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def sign(self, seq: int, head: str, ts: str, mac_from: int = 0) -> Checkpoint:
        unsigned = Checkpoint(seq, head, ts, "", mac_from)
        signature = base64.b64encode(self._key.sign(unsigned.message())).decode()
        return Checkpoint(seq, head, ts, signature, mac_from)

    def current(self, log: AuditLog, ts: str) -> Checkpoint:
        """A checkpoint of the log's head now (seq 0 and 64 zeros for an empty log)."""
        seq, head = log.head()
        return self.sign(seq, head, ts, log.mac_from())

    def publish(self, log: AuditLog, ts: str, after: int = 0) -> int:
        """Record a checkpoint of the head as an ``audit.checkpoint`` entry if the log grew
        past entry ``after`` (a previous publication's own entry); the new entry's seq."""
        c = self.current(log, ts)
        if c.seq <= after:
            return after
        entry = log.append("platform", "audit.checkpoint", str(c.seq),
                           detail={"head": c.head, "ts": c.ts, "signature": c.signature,
                                   "mac_from": c.mac_from})
        return entry.seq


def audit_key(data_dir: Path) -> str:
    """The platform's checkpoint public key (PEM), derived from ``DATA_DIR/platform.key``:
    what a node's ``audit_checkpoint_key`` pins. Refuses a data dir without that key."""
    from sharedml.platform.keys import KEY_FILE, SecretBox

    if not (Path(data_dir) / KEY_FILE).is_file():
        raise ConfigError(f"no {KEY_FILE} in {data_dir}: the platform's key is made at its "
                          "first start", remedy="give the platform's --data-dir; on a new "
                          "platform run 'sharedml user add' there first")
    return CheckpointSigner(SecretBox.from_data_dir(data_dir).derive(PURPOSE)).public_pem()


def publish_every(signer: CheckpointSigner, log: AuditLog, clock: Clock, stop: Event,
                  period: float = PERIOD_S) -> None:
    """The serving platform's loop: a checkpoint every ``period`` while the log grows."""
    after = 0
    while not stop.wait(period):
        try:
            after = signer.publish(log, clock.now().isoformat(), after)
        except Exception:  # a busy store: the next period publishes
            log_.exception("audit checkpoint not published")


class CheckpointFeed:
    """The checkpoint every node is sent in its heartbeat replies: the log's head,
    signed again at most every ``period`` seconds, so a beat rarely reads the store."""

    def __init__(self, signer: CheckpointSigner, log: AuditLog, clock: Clock,
                 period: float = PUSH_S) -> None:
        self.signer, self.log, self.clock, self.period = signer, log, clock, period
        self._lock = threading.Lock()
        self._latest: Checkpoint | None = None
        self._at: dt.datetime | None = None

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint; ``None`` if the store cannot be read now (next beat)."""
        now = self.clock.now()
        with self._lock:
            if self._at is None or (now - self._at).total_seconds() >= self.period:
                try:
                    self._latest, self._at = self.signer.current(self.log, now.isoformat()), now
                except Exception:  # a busy store: the nodes get the previous one
                    log_.warning("audit checkpoint for the nodes not signed", exc_info=True)
            return self._latest


def against(v: Verification, hashes: dict[int, str], kept: list[Checkpoint],
            public_pem: str) -> Verification:
    """``v`` (a chain that verified on its own) checked against kept checkpoints;
    ``hashes``: the chain's hash by seq for the checkpoints' seqs."""
    from sharedml.platform.audit import Verification

    for c in sorted(kept, key=lambda c: c.seq):
        if not check_signature(c, public_pem):
            return Verification(False, v.entries, v.head, c.seq,
                                f"the checkpoint of entry {c.seq} is not signed by the platform")
        if c.seq == 0:
            continue
        if c.seq > v.entries:
            return Verification(False, v.entries, v.head, c.seq,
                                f"the log was cut: it ends at entry {v.entries}, but a "
                                f"checkpoint of {c.ts} signed entry {c.seq}")
        if hashes.get(c.seq) != c.head:
            return Verification(False, v.entries, v.head, c.seq,
                                f"entries up to {c.seq} were rewritten: entry {c.seq}'s hash "
                                f"differs from the checkpoint of {c.ts}")
    return v


