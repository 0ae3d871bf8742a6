"""One party's part of a registered model version: its file, keys and loader.

Runs in a data party's process (a node agent, ``sharedml run``'s party
processes, the online scoring service); the platform never reads a part,
only the public header fields and fingerprints the registry records.

The stable API (for batch scoring and the online service)::

    from sharedml.modelpart import FileNodeKeys, PartStore

    keys = FileNodeKeys(Path("work/keys"))            # the node's key seam
    store = PartStore(Path("work/models"), keys, party="bank")
    part = store.load(uid, fingerprint)                # refuses any other version
    X = part.features(new_rows, id_columns=["id"])     # schema checked, pipeline applied
    scores = part.model.predict(session, X)            # joint, with the other parties

* :mod:`~sharedml.modelpart.format` — the part file (header in clear, body sealed).
* :mod:`~sharedml.modelpart.part` — :class:`ModelPart`: header, learner, pipeline.
* :mod:`~sharedml.modelpart.pipeline` — :class:`FeaturePipeline`: schema and fitted transforms.
* :mod:`~sharedml.modelpart.keys` — :class:`NodeKeys` (seam), :class:`FileNodeKeys`.
* :mod:`~sharedml.modelpart.store` — :class:`PartStore`; signed export and import.
* :mod:`~sharedml.modelpart.refs` — ``name@alias``, ``name@3`` and uid references.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sharedml.modelpart.format import PartHeader
    from sharedml.modelpart.keys import FileNodeKeys, NodeKeys, write_private
    from sharedml.modelpart.part import ModelPart, register_kind
    from sharedml.modelpart.pipeline import FeaturePipeline
    from sharedml.modelpart.store import PartStore, export_part, import_part

#: Each name's module, imported on first use: the pipeline pulls pandas, which
#: ``sharedml model ...`` commands that only talk to the platform never need.
_LAZY = {
    "PartHeader": "format", "FileNodeKeys": "keys", "NodeKeys": "keys",
    "write_private": "keys", "ModelPart": "part", "register_kind": "part",
    "FeaturePipeline": "pipeline", "PartStore": "store", "export_part": "store",
    "import_part": "store",
}

__all__ = [
    "FeaturePipeline", "FileNodeKeys", "ModelPart", "NodeKeys", "PartHeader", "PartStore",
    "export_part", "import_part", "register_kind", "write_private",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
