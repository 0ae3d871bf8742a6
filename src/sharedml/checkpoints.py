"""Signed audit checkpoints as everyone holds them: the statement, its signature
check and the file of kept ones (9.3).

The platform signs (``platform/audit_checkpoints.py``); owners and auditors
keep what they fetch (``sharedml audit checkpoint --save``) and node agents
keep what the platform sends in heartbeat replies (``node/checkpoints.py``).
Both sides import this module, which imports neither: a data provider's
process never loads the operator's layer.

A checkpoint is the platform's Ed25519 signature over ``{seq, head, ts}`` (and
``mac_from`` once its log carries MACs): entry ``seq`` of its audit log had
hash ``head`` at ``ts``. A kept file is the platform's public key (PEM, pinned
by the first save) followed by one checkpoint a line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sharedml.errors import ConfigError

#: The HKDF purpose of the platform's signing key, and the signed statement's label.
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


#: A pinned key's form in ``node.yaml``: ``sha256:`` and 64 hex digits (:func:`fingerprint`).
FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")


def fingerprint(public_pem: str) -> str:
    """``sha256:`` + the SHA-256 of the key's DER SubjectPublicKeyInfo (what
    ``sharedml platform audit-key`` prints and ``node.yaml`` may pin)."""
    try:
        key = serialization.load_pem_public_key(public_pem.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError("the platform's audit key is not a PEM public key") from None
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def check_signature(checkpoint: Checkpoint, public_pem: str) -> bool:
    key = serialization.load_pem_public_key(public_pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("the platform's audit key is not an Ed25519 public key")
    try:
        key.verify(base64.b64decode(checkpoint.signature), checkpoint.message())
    except (InvalidSignature, ValueError):
        return False
    return True


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
