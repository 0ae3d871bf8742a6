"""A node's at-rest keys: made once by ``sharedml node init CONFIG``, before the first start.

The node key seals everything a node keeps of a model at rest — its model
parts, sealed prediction outputs, the serving cache — and signs its part
exports (:class:`~sharedml.modelpart.NodeKeys`). :func:`init_node_keys`
makes them in the config's ``keys_dir`` (default ``work_dir/keys``):
``at-rest.key`` (32 random bytes, AES-256-GCM) and ``signing.key``
(Ed25519, PKCS#8), both mode 0600 in a 0700 folder, and
``signing.pub.pem`` (the key the other parties trust for imports). It never
replaces existing keys — that would make every sealed part unreadable — and
refuses existing key files that group or others may read.

The key-management seam: every caller holds a ``NodeKeys`` (five calls:
``seal``, ``open``, ``sign``, ``public_key_pem``, ``derive``; plus
``key_id``) and never reads key bytes. Today the one implementation is
:class:`~sharedml.modelpart.FileNodeKeys` (these files); an HSM or cloud
KMS replaces it by implementing the same calls — envelope encryption under
a KMS key for ``seal``/``open``, an Ed25519 key held by the device for
``sign`` — and being built where the node builds its keys (``node/tasks.py``
``Tasks._part_store``, ``serving/run.py`` ``PartSource.open``). A node agent
that finds no keys at its first start still makes them, as before; ``init``
makes that step explicit, so an operator can back up the public key and set
permissions before any data arrives.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from sharedml.modelpart.keys import AT_REST_FILE, PUBLIC_FILE, SIGNING_FILE, FileNodeKeys


@dataclass(frozen=True)
class NodeKeysInit:
    """What ``init`` found or made."""

    directory: Path
    key_id: str
    created: bool

    def summary(self) -> str:
        what = "created" if self.created else "kept the existing"
        modes = ", ".join(f"{n} {_mode(self.directory / n)}"
                          for n in (AT_REST_FILE, SIGNING_FILE, PUBLIC_FILE))
        return (f"{what} node keys {self.key_id} in {self.directory} ({modes}); give the "
                f"other parties {self.directory / PUBLIC_FILE} to trust this node's exports")


def init_node_keys(directory: Path) -> NodeKeysInit:
    """Make the node's keys in ``directory`` unless they exist (then check and keep them)."""
    directory = Path(directory)
    if (directory / AT_REST_FILE).exists():
        return NodeKeysInit(directory, FileNodeKeys(directory).key_id.hex(), False)
    return NodeKeysInit(directory, FileNodeKeys.create(directory).key_id.hex(), True)


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode)) if path.exists() else "missing"
