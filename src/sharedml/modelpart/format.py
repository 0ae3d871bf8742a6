"""The model-part file: one party's part of one model version, sealed at rest.

Layout (version 1), all integers big-endian::

    b"SMLP" | u8 version = 1 | u32 header length | header (UTF-8 JSON) | sealed body

* The **header** is public metadata, readable without a key, so the registry
  can record it and a node can list its parts: ``format``
  (``"sharedml.model-part"``), ``format_version``, ``model_uid`` (the model
  version's id, drawn by the label holder at training and the same in every
  party's part), ``party``, ``parties``, ``label_holder``, ``kind`` (the
  learner class, e.g. ``SSLogisticRegression``), ``task``, ``job``, ``step``,
  ``created_at`` (ISO 8601, UTC) and ``fingerprint`` (``sha256:<hex>`` of the
  plaintext body). Canonical JSON (sorted keys, no spaces).
* The **body** is canonical JSON: ``salt`` (32 random bytes, hex: the
  fingerprint of a small model cannot be confirmed by guessing its
  parameters), ``model_uid`` and ``party`` again, ``model`` (the learner's own
  document, :meth:`~sharedml.learn.base.VerticalModel.to_dict`) and
  ``pipeline`` (:class:`~sharedml.modelpart.pipeline.FeaturePipeline`). It is
  sealed with the node's at-rest key (:mod:`sharedml.modelpart.keys`,
  AES-256-GCM) with the magic, version and header as associated data: an
  edited header fails to open.

Opening checks, in order: magic and version, the seal (this node's key, the
header unchanged), the body's SHA-256 against the header's fingerprint, the
body's ``model_uid`` and ``party`` against the header's; then the caller
compares ``model_uid`` and ``fingerprint`` with what the registry recorded
for the version it asked for (:meth:`PartStore.load
<sharedml.modelpart.store.PartStore.load>`).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass, fields
from typing import Any

from sharedml.errors import DataError

__all__ = ["FORMAT", "FORMAT_VERSION", "PartHeader", "canonical", "fingerprint", "split_file"]

MAGIC = b"SMLP"
FORMAT = "sharedml.model-part"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">4sBI")
_MAX_HEADER = 1 << 20


def canonical(doc: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8 (floats as Python's repr)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def fingerprint(body: bytes) -> str:
    """``sha256:<hex>`` of a part's plaintext body."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class PartHeader:
    """A model part's public metadata (see the module docstring)."""

    model_uid: str
    party: str
    parties: tuple[str, ...]
    label_holder: str
    kind: str
    task: str
    job: str
    step: str
    created_at: str
    fingerprint: str
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        doc["parties"] = list(self.parties)
        return canonical(doc)

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> PartHeader:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DataError(f"{where} is not a sharedml model part")
        if doc.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{where} is model-part format version {doc.get('format_version')}, "
                            f"this sharedml reads {FORMAT_VERSION}",
                            remedy="use the sharedml release that wrote it")
        texts = [f.name for f in fields(cls) if f.type == "str"]
        bad = [k for k in texts if not isinstance(doc.get(k), str)]
        parties = doc.get("parties")
        if not isinstance(parties, list) or not all(isinstance(p, str) for p in parties):
            raise DataError(f"{where} has a malformed header: parties not a list of names")
        if bad:
            raise DataError(f"{where} has a malformed header: {', '.join(bad)} not text")
        try:
            return cls(**{**doc, "parties": tuple(parties)})
        except TypeError as exc:
            raise DataError(f"{where} has a malformed header: {exc}") from None

    def prefix(self) -> bytes:
        """Magic, version, header length and header: the body's associated data."""
        head = self.to_bytes()
        return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head


def split_file(blob: bytes, where: str) -> tuple[PartHeader, bytes, bytes]:
    """(header, the prefix bytes, what follows) of a part or export file."""
    if len(blob) < _PREFIX.size:
        raise DataError(f"{where} is too short to be a model part")
    magic, version, size = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise DataError(f"{where} is not a sharedml model part (bad magic)")
    if version != FORMAT_VERSION:
        raise DataError(f"{where} is model-part file version {version}, this sharedml reads "
                        f"{FORMAT_VERSION}", remedy="use the sharedml release that wrote it")
    if size > _MAX_HEADER or _PREFIX.size + size > len(blob):
        raise DataError(f"{where} has a header length ({size}) beyond the file")
    end = _PREFIX.size + size
    try:
        doc = json.loads(blob[_PREFIX.size:end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{where} has an unreadable header: {exc}") from None
    header = PartHeader.from_dict(doc, where)
    if header.prefix() != blob[:end]:
        raise DataError(f"{where} has a header that is not in canonical form")
    return header, blob[:end], blob[end:]
