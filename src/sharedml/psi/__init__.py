"""Private set intersection and sample/feature alignment (standard 8.1.1-2).

* :func:`psi_digests` — the front door (:mod:`sharedml.psi.api`): ECDH-PSI on
  Curve25519 for two or more parties (:mod:`sharedml.psi.ecdh`), or OT-based
  KKRT PSI for two (:mod:`sharedml.psi.kkrt`, the default for two);
* :func:`align_rows` — a frame's rows of the intersection, in an order every
  receiver shares;
* :mod:`sharedml.psi.features` — vertical and horizontal feature agreement.
"""

from sharedml.psi.align import align_rows
from sharedml.psi.api import PsiResult, psi_digests
from sharedml.psi.keys import KeyRules, digest_keys

__all__ = ["KeyRules", "PsiResult", "align_rows", "digest_keys", "psi_digests"]
