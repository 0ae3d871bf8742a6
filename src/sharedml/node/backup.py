"""A node's model parts, backed up sealed under its operator's passphrase (8.3-5).

Each party's share of a trained model lives only at its own node
(``work_dir/jobs/<job>/model-<step>.json``); losing the node's disk loses the
model for every party. ``sharedml node-backup node.yaml FILE`` packs those
files into one file sealed with scrypt + AES-GCM
(:mod:`sharedml.crypto.passphrase`); ``sharedml node-restore`` puts them back
into a node's work dir, refusing to overwrite a file there and any member
that is not a model part (no path leaves ``jobs/<job>/``). Node keys and
datasets are not in it: keys are made again with ``pki request``, data stays
where its owner keeps it.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path

from sharedml.crypto import passphrase as pp
from sharedml.errors import ConfigError

_MEMBER = re.compile(r"^jobs/[0-9A-Za-z_-]{1,64}/model-[0-9A-Za-z_.-]{1,128}\.json$")


def _purpose(party: str) -> str:
    return f"model parts of node {party}"


def backup_models(party: str, work_dir: Path, out: Path, secret: str) -> int:
    """Seal every model part in ``work_dir`` into ``out`` (mode 0600); returns how many."""
    work_dir = Path(work_dir)
    files = sorted(p for p in work_dir.glob("jobs/*/model-*.json")
                   if _MEMBER.match(p.relative_to(work_dir).as_posix()))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in files:
            tar.add(path, arcname=path.relative_to(work_dir).as_posix())
    sealed = {"format": "sharedml-node-models", "party": party,
              "models": pp.seal(buffer.getvalue(), secret, _purpose(party))}
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(sealed, fh)
    return len(files)


def restore_models(party: str, work_dir: Path, file: Path, secret: str) -> list[Path]:
    """Put the model parts of ``file`` (from :func:`backup_models`) into ``work_dir``."""
    try:
        sealed = json.loads(Path(file).read_text(encoding="utf-8"))
        if sealed.get("format") != "sharedml-node-models":
            raise ValueError("format")
    except (OSError, ValueError, AttributeError):
        raise ConfigError(f"{file} is not a node's model backup") from None
    if sealed.get("party") != party:
        raise ConfigError(f"{file} holds the models of node {sealed.get('party')!r}, not "
                          f"{party!r}", party=party, remedy="restore it on its own node")
    data = pp.open_sealed(sealed["models"], secret, _purpose(party))
    restored = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            if not member.isfile() or not _MEMBER.match(member.name):
                raise ConfigError(f"{file}: unexpected member {member.name!r}", party=party)
            if (Path(work_dir) / member.name).exists():
                raise ConfigError(f"{Path(work_dir) / member.name} exists; not overwritten",
                                  party=party, remedy="restore into a node without this job")
        for member in members:
            tar.extract(member, work_dir, filter="data")
            restored.append(Path(work_dir) / member.name)
    return restored
