"""A node's model parts on disk, and their signed export and import.

:class:`PartStore` keeps each model version's part of this party in
``root/<model uid>.smp`` (mode 0600, sealed with the node's at-rest key;
:mod:`sharedml.modelpart.format`). :meth:`PartStore.load` is *the* loader the
batch ``predict`` step and the online scoring service use: it opens the part
of the version asked for and refuses a part of any other version.

Export file (``.smx``, version 1), integers big-endian::

    b"SMLX" | u8 version = 1 | u32 meta length | meta (canonical JSON) |
    the part's prefix (b"SMLP" ... header, as in the part file) | plaintext body |
    64-byte Ed25519 signature of everything before it

``meta`` holds ``exported_at`` and ``signer`` (the exporting node's signing
public key, PEM). The body is in clear so another node of the same party can
re-seal it under its own key: an export is a copy of the party's model part
and must travel only over the party's own channels (it is written mode 0600).
Import checks, each refusal naming what failed: the signer is one the
importing node trusts (itself by default) and the signature holds; the body
matches the header's fingerprint; the part is of the version the caller
expects (``model_uid``) with the fingerprint the registry recorded; it is
this node's party's part. Then it is sealed under this node's key.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
from collections.abc import Iterable
from pathlib import Path

from sharedml.errors import DataError, PolicyDenied
from sharedml.modelpart.format import canonical, split_file
from sharedml.modelpart.keys import NodeKeys, key_id_of, verify_signature, write_private
from sharedml.modelpart.part import ModelPart

__all__ = ["PartStore", "export_part", "import_part"]

_UID = re.compile(r"^[0-9a-f]{32}$")
_EXPORT = struct.Struct(">4sBI")
EXPORT_MAGIC = b"SMLX"
EXPORT_VERSION = 1
_SIG = 64


def check_uid(uid: str) -> str:
    """A model uid is 32 lowercase hex digits (so it is safe as a file name)."""
    if not _UID.match(uid or ""):
        raise DataError(f"{uid!r} is not a model version id (32 hex digits)")
    return uid


class PartStore:
    """This party's model parts in ``root``, sealed with ``keys``."""

    def __init__(self, root: Path, keys: NodeKeys, party: str | None = None) -> None:
        self.root = Path(root)
        self.keys = keys
        self.party = party

    def path(self, uid: str) -> Path:
        return self.root / f"{check_uid(uid)}.smp"

    def save(self, part: ModelPart) -> Path:
        """Write ``part`` sealed (mode 0600); a version's part is never overwritten."""
        path = self.path(part.uid)
        if path.exists():
            raise DataError(f"model version {part.uid} already has a part here ({path})",
                            party=part.header.party, remedy="model versions are immutable")
        return write_private(path, part.seal(self.keys))

    def load(self, uid: str, fingerprint: str | None = None) -> ModelPart:
        """This party's part of model version ``uid``, checked against the registry's
        ``fingerprint`` for it when given.

        Raises :class:`DataError` if the node holds no part of that version, or
        the file is altered, sealed by another node, or of another version.
        """
        path = self.path(uid)
        if not path.exists():
            raise DataError(f"this node holds no part of model version {uid}",
                            party=self.party, remedy="import the party's export of that "
                            "version ('sharedml model import') or train it here")
        part = ModelPart.unseal(path.read_bytes(), self.keys, where=str(path))
        _expect(part, uid, fingerprint, self.party, str(path))
        return part

    def uids(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.smp") if _UID.match(p.stem))

    def delete(self, uid: str) -> bool:
        """Remove this party's part of ``uid``; whether there was one."""
        path = self.path(uid)
        if not path.exists():
            return False
        path.unlink()
        return True

    def export(self, uid: str, out: Path, now: dt.datetime | None = None) -> Path:
        """Write a signed export of this party's part of ``uid`` to ``out`` (mode 0600)."""
        return write_private(Path(out), export_part(self.load(uid), self.keys, now))

    def import_(self, source: Path, *, uid: str, fingerprint: str | None,
                trusted: Iterable[bytes] = ()) -> ModelPart:
        """Verify an export (see the module docstring) and store it sealed under this node's key."""
        part = import_part(Path(source).read_bytes(), uid=uid, fingerprint=fingerprint,
                           trusted=[self.keys.public_key_pem(), *trusted], party=self.party,
                           where=str(source))
        self.save(part)
        return part


def export_part(part: ModelPart, keys: NodeKeys, now: dt.datetime | None = None) -> bytes:
    """The signed export bytes of ``part`` (see the module docstring)."""
    meta = canonical({"exported_at": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
                      "signer": keys.public_key_pem().decode("ascii")})
    unsigned = (_EXPORT.pack(EXPORT_MAGIC, EXPORT_VERSION, len(meta)) + meta
                + part.header.prefix() + part.body_bytes())
    return unsigned + keys.sign(unsigned)


def import_part(blob: bytes, *, uid: str, fingerprint: str | None, trusted: Iterable[bytes],
                party: str | None = None, where: str = "export") -> ModelPart:
    """The part in a signed export, verified (see the module docstring)."""
    if len(blob) < _EXPORT.size + _SIG:
        raise DataError(f"{where} is too short to be a model-part export")
    magic, version, size = _EXPORT.unpack_from(blob)
    if magic != EXPORT_MAGIC or version != EXPORT_VERSION:
        raise DataError(f"{where} is not a version-{EXPORT_VERSION} sharedml model-part export")
    end = _EXPORT.size + size
    if end > len(blob) - _SIG:
        raise DataError(f"{where} has a meta length ({size}) beyond the file")
    try:
        signer = json.loads(blob[_EXPORT.size:end].decode("utf-8"))["signer"].encode("ascii")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise DataError(f"{where} has an unreadable meta block") from None
    ids = {key_id_of(t) for t in trusted}
    if key_id_of(signer) not in ids:
        raise PolicyDenied(f"{where} is signed by node key {key_id_of(signer).hex()}, which this "
                           "node does not trust", party=party,
                           remedy="pass that node's signing.pub.pem with --trust")
    unsigned, signature = blob[:-_SIG], blob[-_SIG:]
    if not verify_signature(signer, unsigned, signature):
        raise DataError(f"{where}: the signature does not hold — the file was altered",
                        party=party, remedy="export it again from its node")
    header, _, body = split_file(unsigned[end:], where)
    part = ModelPart.from_body(header, body, where)
    _expect(part, uid, fingerprint, party, where)
    return part


def _expect(part: ModelPart, uid: str, fingerprint: str | None, party: str | None,
            where: str) -> None:
    """Refuse a part of another model version, fingerprint or party."""
    if part.uid != uid:
        raise DataError(f"{where} is a part of model version {part.uid}, not of {uid}",
                        party=party, remedy="use the part of the version you asked for")
    if fingerprint is not None and part.fingerprint != fingerprint:
        raise DataError(f"{where} has fingerprint {part.fingerprint}, the registry recorded "
                        f"{fingerprint} for this party's part of {uid}", party=party,
                        remedy="the part was altered or replaced; import the genuine export")
    if party is not None and part.header.party != party:
        raise DataError(f"{where} is party {part.header.party!r}'s part, not {party!r}'s",
                        party=party, remedy="each party loads only its own part")
