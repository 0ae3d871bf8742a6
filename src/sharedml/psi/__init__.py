"""Private set intersection and sample/feature alignment (standard 8.1.1-2).

* :func:`psi_digests` — the front door (:mod:`sharedml.psi.api`): ECDH-PSI on
  Curve25519 for two or more parties (:mod:`sharedml.psi.ecdh`), or OT-based
  KKRT PSI for two (:mod:`sharedml.psi.kkrt`, the default for two);
* :func:`align_rows` — a frame's rows of the intersection, in an order every
  receiver shares;
* :mod:`sharedml.psi.features` — vertical and horizontal feature agreement.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sharedml.psi.align import align_rows
    from sharedml.psi.api import PsiResult, psi_digests
    from sharedml.psi.keys import KeyRules, digest_keys

#: Imported on first use: the front door pulls pandas (alignment, key digests), which a
#: PSI lane — a Ray worker that runs KKRT on digests only — never needs (its start-up
#: is CPU a party pays per worker, bench/scale.py).
_LAZY = {"align_rows": "sharedml.psi.align", "PsiResult": "sharedml.psi.api",
         "psi_digests": "sharedml.psi.api", "KeyRules": "sharedml.psi.keys",
         "digest_keys": "sharedml.psi.keys"}

__all__ = ["KeyRules", "PsiResult", "align_rows", "digest_keys", "psi_digests"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
