"""The PSI front door: :func:`psi_digests` checks the call, chooses the protocol,
runs the step every protocol shares, and hands the distinct keys to it.

Protocols (each module's docstring has its steps, what it reveals to whom and
its security model):

* ``ecdh`` — :mod:`sharedml.psi.ecdh`, ECDH-PSI on Curve25519, two or more parties;
* ``kkrt`` — :mod:`sharedml.psi.kkrt`, OT-based batched-OPRF PSI, two parties,
  about an order of magnitude faster;
* ``auto`` — kkrt for two parties, else ecdh.

With ``session.compute`` (a node's ``compute: {ray: ...}``), kkrt runs on
buckets over the party's Ray lanes (:mod:`sharedml.scale.psi`), with the
same result.

Step 1, shared by both: every party deduplicates its key digests, then all
parties exchange their set sizes and a fingerprint of the run's parameters
(wire version, protocol, batch size, party order, receivers); a mismatch is a
:class:`ConfigError` naming the party. Reveals: every party's count of
distinct keys (public by design).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sharedml.errors import ConfigError
from sharedml.psi.ecdh import DEFAULT_BATCH, ecdh_psi
from sharedml.psi.kkrt import kkrt_psi
from sharedml.psi.rows import unique_first
from sharedml.session import Session

#: The PSI wire version, part of the parameter fingerprint of step 1.
VERSION = 1
PROTOCOLS = ("ecdh", "kkrt")


@dataclass
class PsiResult:
    """One party's outcome.

    ``rows`` are indices into the party's input, one per intersecting key (the
    first row holding it), in the order every receiver agrees on; ``None`` at a
    party that is not a receiver. ``set_sizes`` are every party's count of
    distinct keys (public by design).
    """

    rows: np.ndarray | None
    set_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int | None:
        return None if self.rows is None else len(self.rows)


def psi_digests(
    session: Session,
    digests: np.ndarray,
    *,
    receivers: Sequence[str] | None = None,
    batch: int = DEFAULT_BATCH,
    workers: int | None = None,
    processes: bool = False,
    protocol: str = "auto",
) -> PsiResult:
    """Run PSI on this party's ``(n, 32)`` key digests.

    ``protocol`` is ``"ecdh"``, ``"kkrt"`` or ``"auto"`` (this module's
    docstring). ``receivers`` (default: every party) learn the intersection;
    ``batch``, ``workers`` and ``processes`` tune ECDH's streaming: its batch
    size, the size of its curve pool (default: one per core; 0 or a small
    input runs inline), and a process pool instead of threads.
    """
    protocol = _choose(session, protocol)
    receivers = tuple(session.peers if receivers is None else receivers)
    unknown = [r for r in receivers if r not in session.peers]
    if unknown or not receivers:
        raise ConfigError(
            f"PSI receivers {list(receivers)} must be a non-empty subset of the parties "
            f"{list(session.peers)}",
            party=session.party,
            step="psi",
        )
    if digests.ndim != 2 or digests.shape[1] != 32 or digests.dtype != np.uint8:
        raise ConfigError("psi_digests needs an (n, 32) uint8 array of key digests")
    first = unique_first(digests)
    unique = np.ascontiguousarray(digests[first])
    # A party whose node hands its work to a Ray cluster runs KKRT on buckets
    # (sharedml.scale.psi); the fingerprint names it, so both sides must.
    bucketed = session.compute is not None and protocol == "kkrt"
    sizes = _agree(session, len(first), batch, receivers,
                   "kkrt-bucketed" if bucketed else protocol)
    if bucketed and session.compute is not None:
        found = session.compute.psi(session, unique, sizes, receivers)
    elif protocol == "kkrt":
        found = kkrt_psi(session, unique, sizes, receivers)
    else:
        found = ecdh_psi(
            session, unique, sizes, receivers, batch=batch, workers=workers, processes=processes
        )
    return PsiResult(None if found is None else first[found], sizes)


def _choose(session: Session, protocol: str) -> str:
    """The protocol this run uses: ``auto`` resolved, an unusable choice refused."""
    if protocol == "auto":
        protocol = "kkrt" if len(session.peers) == 2 else "ecdh"
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"unknown PSI protocol {protocol!r}; use auto or one of {list(PROTOCOLS)}",
            party=session.party,
            step="psi",
        )
    if protocol == "kkrt" and len(session.peers) != 2:
        raise ConfigError(
            f"the kkrt PSI protocol runs between two parties, this job has "
            f"{len(session.peers)}",
            party=session.party,
            step="psi",
            remedy="use protocol: ecdh for three or more parties",
        )
    return protocol


def _agree(
    session: Session, m: int, batch: int, receivers: Sequence[str], protocol: str
) -> dict[str, int]:
    """Step 1: exchange set sizes and check every party runs the same protocol."""
    params = repr(
        (VERSION, protocol, batch, tuple(session.peers), tuple(sorted(receivers)))
    ).encode()
    mine = np.frombuffer(hashlib.sha256(params).digest(), np.uint8)
    ch = session.channel
    prints = ch.all_gather("params", mine)
    for peer, fp in prints.items():
        if not np.array_equal(np.asarray(fp), mine):
            raise ConfigError(
                f"party {peer!r} runs PSI with different parameters (protocol, batch "
                "size, receivers, party order, or one node has compute: ray and the other not)",
                party=session.party,
                step="psi",
                remedy="give every party the same psi step parameters",
            )
    sizes = ch.all_gather("size", np.array([m], dtype=np.int64))
    return {p: int(np.asarray(v)[0]) for p, v in sizes.items()}
