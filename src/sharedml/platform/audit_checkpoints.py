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
   as an ``audit.checkpoint`` entry (so the log itself lists what was published).
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
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sharedml.errors import ConfigError

if TYPE_CHECKING:
    from threading import Event

    from sharedml.platform.audit import AuditLog, Verification
    from sharedml.platform.clock import Clock

log_ = logging.getLogger("sharedml.platform.audit")

#: How often a serving platform records a signed checkpoint (when the log grew).
PERIOD_S = 60.0
PURPOSE = "sharedml audit checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    """The platform's signed statement: entry ``seq`` of its audit log had hash ``head``."""

    seq: int
    head: str
    ts: str
    signature: str  # base64 Ed25519 over :meth:`message`
    #: The first entry with a MAC (``audit_mac.py``); every later one must have one.
    #: 0: none yet (and signed as absent, so checkpoints from before MACs verify).
    mac_from: int = 0

    def message(self) -> bytes:
        body: dict[str, object] = {"seq": self.seq, "head": self.head, "ts": self.ts,
                                   "purpose": PURPOSE}
        if self.mac_from:
            body["mac_from"] = self.mac_from
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Checkpoint:
        """From its JSON fields (a saved line, the API's answer, a node's message)."""
        try:
            return cls(int(str(d["seq"])), str(d["head"]), str(d["ts"]), str(d["signature"]),
                       int(str(d.get("mac_from") or 0)))
        except (ValueError, KeyError, TypeError):
            raise ConfigError("a saved audit checkpoint is not a checkpoint line",
                              remedy="save checkpoints with 'sharedml audit checkpoint'") from None

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        try:
            d = json.loads(text)
        except ValueError:
            d = None
        if not isinstance(d, dict):
            raise ConfigError("a saved audit checkpoint is not a checkpoint line",
                              remedy="save checkpoints with 'sharedml audit checkpoint'")
        return cls.from_dict(d)


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


def publish_every(signer: CheckpointSigner, log: AuditLog, clock: Clock, stop: Event,
                  period: float = PERIOD_S) -> None:
    """The serving platform's loop: a checkpoint every ``period`` while the log grows."""
    after = 0
    while not stop.wait(period):
        try:
            after = signer.publish(log, clock.now().isoformat(), after)
        except Exception:  # a busy store: the next period publishes
            log_.exception("audit checkpoint not published")


def check_signature(checkpoint: Checkpoint, public_pem: str) -> bool:
    key = serialization.load_pem_public_key(public_pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("the platform's audit key is not an Ed25519 public key")
    try:
        key.verify(base64.b64decode(checkpoint.signature), checkpoint.message())
    except (InvalidSignature, ValueError):
        return False
    return True


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


def load_kept(path: Path) -> tuple[str, list[Checkpoint]]:
    """A checkpoint file: the platform's public key (PEM), then one checkpoint a line."""
    text = path.read_text(encoding="utf-8")
    pem, sep, rest = text.partition("-----END PUBLIC KEY-----\n")
    if not sep:
        raise ConfigError(f"{path} does not start with the platform's audit key",
                          remedy="save checkpoints with 'sharedml audit checkpoint --save'")
    return pem + sep, [Checkpoint.from_json(line) for line in rest.splitlines() if line.strip()]


def keep(path: Path, public_pem: str, checkpoint: Checkpoint) -> None:
    """Append ``checkpoint`` to ``path`` after checking it against the key pinned there
    (the first save pins ``public_pem``)."""
    if path.exists():
        pinned, _ = load_kept(path)
        if pinned != public_pem:
            raise ConfigError(f"the platform's audit key differs from the one pinned in {path}",
                              remedy="if the platform's key really changed, start a new file")
    else:
        path.write_text(public_pem, encoding="utf-8")
    if not check_signature(checkpoint, public_pem):
        raise ConfigError("the checkpoint's signature does not verify; it was not kept")
    with path.open("a", encoding="utf-8") as fh:
        fh.write(checkpoint.to_json() + "\n")
