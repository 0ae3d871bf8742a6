"""Who masks with whom in a round: the complete graph, or SecAgg+'s sparse one (pure).

SecAgg+ (Bell et al., CCS 2020) lets each client share keys and masks with
``degree`` neighbours instead of all others. Here the graph is a circulant
("Harary") graph on a public, per-round shuffle of the round's clients: a
client's neighbours are the ``degree / 2`` clients on each side of it. The
shuffle comes from the round number alone, so every role can recompute it
and nobody chooses it.

The server learns one partial sum per connected component of the graph
restricted to the survivors; :func:`connected` is checked before any
secret is revealed, so a round whose survivors fall apart aborts instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np


def ring(round_id: int, members: Iterable[int]) -> list[int]:
    """``members`` in the round's public order (a shuffle seeded by ``round_id`` alone)."""
    ordered = sorted(members)
    seed = hashlib.sha256(f"sharedml/secagg/graph/{round_id}".encode()).digest()
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(seed[:16], "little")))
    return [ordered[i] for i in rng.permutation(len(ordered))]  # public, not a secret


def neighbours(round_id: int, members: Iterable[int], degree: int | None) -> dict[int, set[int]]:
    """Each member's neighbours: all others, or ``degree`` of them (even): the
    ``degree / 2`` on each side in the round's :func:`ring`."""
    ordered = sorted(members)
    m = len(ordered)
    if degree is None or degree >= m - 1:
        return {u: set(ordered) - {u} for u in ordered}
    order = ring(round_id, ordered)
    out: dict[int, set[int]] = {u: set() for u in ordered}
    for pos, u in enumerate(order):
        for step in range(1, degree // 2 + 1):
            v = order[(pos + step) % m]
            out[u].add(v)
            out[v].add(u)
    return out


def connected(nodes: Iterable[int], graph: dict[int, set[int]]) -> bool:
    """Whether ``nodes`` form one component of ``graph`` restricted to them."""
    left = set(nodes)
    if not left:
        return True
    stack = [left.pop()]
    while stack:
        u = stack.pop()
        reach = graph[u] & left
        left -= reach
        stack.extend(reach)
    return not left


#: Up to this many clients, every client masks with every other (the complete graph).
COMPLETE_UP_TO = 16


def default_degree(clients: int) -> int | None:
    """The masking degree a job gets when it names none: ``None`` (the complete graph)
    for up to :data:`COMPLETE_UP_TO` clients, else the even number at or above
    ``3·log2(clients)``.

    Bell et al. (CCS 2020) show a degree of order ``log n`` suffices; the factor 3
    is ours, not their bound's constant (which depends on the corrupt and dropout
    fractions assumed), so large deployments should set ``neighbours`` from their
    own threat figures.
    """
    if clients <= COMPLETE_UP_TO:
        return None
    degree = int(np.ceil(3 * np.log2(clients)))
    return min(degree + degree % 2, clients - 1 - (clients - 1) % 2)
