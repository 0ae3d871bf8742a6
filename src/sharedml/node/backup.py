"""A node's model parts, backed up sealed under its operator's passphrase (8.3-5).

Each party's share of a trained model lives only at its own node
(``models_dir/<uid>.smp``, sealed with the node's at-rest key in ``keys_dir``;
older jobs' ``work_dir/jobs/<job>/model-<step>.json``); losing the node's
disk loses the model for every party. ``sharedml node-backup node.yaml FILE``
packs the parts and the keys that open them into one file sealed with scrypt
+ AES-GCM (:mod:`sharedml.crypto.passphrase`); ``sharedml node-restore`` puts
them back, refusing to overwrite a file and any member that is not a model
part or a key. The TLS key and the datasets are not in it: the TLS key is
made again with ``pki request``, data stays where its owner keeps it.
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

_MEMBER = re.compile(r"^(jobs/[0-9A-Za-z_-]{1,64}/model-[0-9A-Za-z_.-]{1,128}\.json"
                     r"|models/[0-9a-f]{32}\.smp|keys/[0-9A-Za-z_][0-9A-Za-z_.-]{0,127})$")


def _purpose(party: str) -> str:
    return f"model parts of node {party}"


def _roots(work_dir: Path, models_dir: Path | None, keys_dir: Path | None) -> dict[str, Path]:
    """Where each archive prefix lives on this node."""
    work_dir = Path(work_dir)
    return {"jobs": work_dir / "jobs", "models": Path(models_dir or work_dir / "models"),
            "keys": Path(keys_dir or work_dir / "keys")}


def backup_models(party: str, work_dir: Path, out: Path, secret: str,
                  models_dir: Path | None = None, keys_dir: Path | None = None) -> int:
    """Seal the node's model parts (sealed ``models/<uid>.smp`` with the ``keys/`` that
    open them, and older ``jobs/<job>/model-*.json``) into ``out`` (mode 0600)."""
    files = []
    for prefix, root in _roots(work_dir, models_dir, keys_dir).items():
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            name = f"{prefix}/{path.relative_to(root).as_posix()}"
            if path.is_file() and _MEMBER.match(name):
                files.append((path, name))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, name in files:
            tar.add(path, arcname=name)
    sealed = {"format": "sharedml-node-models", "party": party,
              "models": pp.seal(buffer.getvalue(), secret, _purpose(party))}
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(sealed, fh)
    return sum(name.startswith(("models/", "jobs/")) for _, name in files)


def restore_models(party: str, work_dir: Path, file: Path, secret: str,
                   models_dir: Path | None = None, keys_dir: Path | None = None) -> list[Path]:
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
    roots = _roots(work_dir, models_dir, keys_dir)
    restored = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            if not member.isfile() or not _MEMBER.match(member.name):
                raise ConfigError(f"{file}: unexpected member {member.name!r}", party=party)
            target = _target(roots, member.name)
            if target.exists():
                raise ConfigError(f"{target} exists; not overwritten", party=party,
                                  remedy="restore into a node that has not run yet")
        for member in members:
            target = _target(roots, member.name)
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            source = tar.extractfile(member)
            if source is None:
                raise ConfigError(f"{file}: unreadable member {member.name!r}", party=party)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(source.read())
            restored.append(target)
    return restored


def _target(roots: dict[str, Path], name: str) -> Path:
    prefix, _, rest = name.partition("/")
    return roots[prefix] / rest
