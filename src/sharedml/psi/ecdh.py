"""ECDH-PSI on Curve25519 for two or more parties, streamed in batches.

Protocol (parties ``P_0 .. P_{n-1}`` in ``session.peers`` order, each with a
secret scalar ``k_i``; ``H`` hashes to the curve, see :mod:`sharedml.psi.curve`):

1. Every party dedups its keys, and all parties exchange their set sizes and a
   fingerprint of the protocol parameters (a mismatch aborts); the PSI front
   door, :func:`sharedml.psi.api.psi_digests`, runs this step for every protocol.
2. ``P_i`` draws a secret random permutation ``π_i`` and computes
   ``[k_i] H(x)`` for its keys in ``π_i`` order, sending them in batches to
   ``P_{i+1}``.
3. Every party that receives a batch of ``P_j``'s set from ``P_{i-1}``
   multiplies it by its own ``k_i`` and passes it on to ``P_{i+1}``. After
   ``n-1`` hops the batch returns to its owner as the tags
   ``T(x) = [k_0 k_1 ... k_{n-1}] H(x)`` (truncated to 16 bytes), which
   the owner un-permutes onto its own rows. Steps 2 and 3 overlap: batches
   stream through a process pool on every party at once.
4. Each party sends its sorted tag set to every result receiver.
5. A receiver keeps its rows whose tag is in every other party's tag set and
   orders them by tag. All receivers hold the same keys, hence the same tags,
   hence the same row order.

Reveals: each receiver learns the intersection (its own rows in it) and every
party's set size; with three or more parties a receiver also learns the size
of the intersection of any subset of the other parties' sets (their tags are
comparable). A non-receiver learns only the set sizes. Every party sees the
others' keys only as points blinded by at least one key it does not hold;
the permutations hide the row positions of every set.

Security: semi-honest. Privacy of a party's non-intersecting keys rests on
the DDH assumption in the prime-order subgroup of Curve25519 with ``H`` a
random oracle; a receiver colluding with the parties that blind a set after
its owner learns that set's tags' preimages by dictionary attack, so no
receiver may collude with other parties. Not secure against malicious
parties (a party can blind extra guesses or substitute its set).

Reference: C. Meadows, "A more efficient cryptographic matchmaking protocol",
IEEE S&P 1986; B. Huberman, M. Franklin, T. Hogg, "Enhancing privacy and trust
in electronic communities", ACM EC 1999; the multi-party ring follows
Vaidya–Clifton, "Secure set intersection cardinality", JCS 2005.
"""

from __future__ import annotations

import functools
import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from sharedml.errors import ProtocolAbort
from sharedml.psi import curve
from sharedml.psi.pool import CurvePool, pipeline
from sharedml.psi.rows import as_void, secret_permutation
from sharedml.session import Session

TAG_BYTES = 16
DEFAULT_BATCH = 8192
TAGSET_CHUNK = 1 << 18
#: Below this many curve operations per party, blind inline (no worker processes).
INLINE_BELOW = 20_000


class _Ring:
    """One party's role in the ring; a fresh object per protocol run."""

    def __init__(self, session: Session, batch: int, pool: CurvePool) -> None:
        self.s = session
        self.ch = session.channel
        self.batch = batch
        self.pool = pool
        self.key = curve.new_key()
        n = len(session.peers)
        i = session.index
        self.next = session.peers[(i + 1) % n]
        self.prev = session.peers[(i - 1) % n]

    def batches(self, m: int) -> int:
        return math.ceil(m / self.batch)

    def send_own(self, unique: np.ndarray, perm: np.ndarray) -> None:
        """Step 2: ``[k_i] H(x)`` of this party's keys, permuted, to the next party."""
        tag = f"ring/{self.s.party}"

        def source() -> Iterator[bytes]:
            for start in range(0, len(perm), self.batch):
                yield np.ascontiguousarray(unique[perm[start : start + self.batch]]).tobytes()

        def sink(_i: int, out: bytes) -> None:
            self.ch.send(self.next, tag, np.frombuffer(out, np.uint8).reshape(-1, 32))

        pipeline(self.pool, curve.hash_and_blind, self.key, source(), sink)

    def relay(self, owner: str, m: int) -> None:
        """Step 3: blind ``owner``'s batches from the previous party and pass them on."""
        tag = f"ring/{owner}"
        expected = self.batches(m)

        def source() -> Iterator[bytes]:
            for b in range(expected):
                pts = self.ch.recv(self.prev, tag)
                want = min(self.batch, m - b * self.batch)
                if not isinstance(pts, np.ndarray) or pts.shape != (want, 32) or pts.dtype != np.uint8:
                    raise ProtocolAbort(
                        f"batch {b} of {owner!r}'s set has shape "
                        f"{getattr(pts, 'shape', None)}, expected ({want}, 32) uint8",
                        party=self.s.party,
                        step="psi",
                    )
                yield pts.tobytes()

        def sink(_i: int, out: bytes) -> None:
            self.ch.send(self.next, tag, np.frombuffer(out, np.uint8).reshape(-1, 32))

        pipeline(self.pool, curve.blind, self.key, source(), sink)

    def collect_own(self, perm: np.ndarray) -> np.ndarray:
        """End of step 3: this party's tags, back on its own (deduplicated) rows."""
        m = len(perm)
        tags = np.empty((m, TAG_BYTES), dtype=np.uint8)
        if len(self.s.peers) == 1:
            return tags
        tag = f"ring/{self.s.party}"
        for b in range(self.batches(m)):
            sel = perm[b * self.batch : (b + 1) * self.batch]
            pts = self.ch.recv(self.prev, tag)
            if not isinstance(pts, np.ndarray) or pts.shape != (len(sel), 32):
                raise ProtocolAbort(
                    f"returned batch {b} has shape {getattr(pts, 'shape', None)}",
                    party=self.s.party,
                    step="psi",
                )
            tags[sel] = pts[:, :TAG_BYTES]
        return tags


def _run_threads(jobs: list[tuple[str, Callable[[], object]]]) -> None:
    """Run callables concurrently; raise the first error as soon as it happens.

    The threads are daemons: one still blocked on a peer when another failed
    must not keep the party from reporting the failure (its peers are woken
    by the channel's failure notice or their timeout).
    """
    done: queue.Queue[BaseException | None] = queue.Queue()

    def wrap(fn: Callable[[], object]) -> None:
        try:
            fn()
            done.put(None)
        except BaseException as exc:  # re-raised on the calling thread
            done.put(exc)

    for name, fn in jobs:
        threading.Thread(target=wrap, args=(fn,), name=name, daemon=True).start()
    for _ in jobs:
        error = done.get()
        if error is not None:
            raise error


def ecdh_psi(
    session: Session,
    unique: np.ndarray,
    sizes: dict[str, int],
    receivers: Sequence[str],
    *,
    batch: int = DEFAULT_BATCH,
    workers: int | None = None,
    processes: bool = False,
) -> np.ndarray | None:
    """Steps 2-5 on this party's distinct ``(n, 32)`` digests, after step 1
    (:func:`sharedml.psi.api.psi_digests` runs it and gives ``sizes``).

    Returns indices into ``unique`` of the intersection, in the order every
    receiver shares, or ``None`` at a party that does not receive.
    ``workers`` is the size of the curve pool (default: one per core; 0 or a
    small input runs inline), ``processes`` makes it a process pool.
    """
    if workers is None and sum(sizes.values()) < INLINE_BELOW:
        workers = 0
    perm = secret_permutation(len(unique))
    with CurvePool(workers, processes=processes) as pool:
        ring = _Ring(session, batch, pool)
        holder: dict[str, np.ndarray] = {}
        jobs: list[tuple[str, Callable[[], object]]] = [
            ("psi-own", lambda: ring.send_own(unique, perm)),
            ("psi-collect", lambda: holder.__setitem__("tags", ring.collect_own(perm))),
        ]
        for owner in session.others:
            jobs.append((f"psi-relay-{owner}", functools.partial(ring.relay, owner, sizes[owner])))
        if len(session.peers) > 1:
            _run_threads(jobs)
        else:
            holder["tags"] = np.empty((len(unique), TAG_BYTES), np.uint8)
    tags = holder["tags"]
    _send_tagset(session, tags, receivers)
    if session.party not in receivers:
        return None
    member = np.ones(len(unique), dtype=bool)
    mine = as_void(tags)
    for peer in session.others:
        theirs = _recv_tagset(session, peer, sizes[peer])
        member &= np.isin(mine, theirs)
    order = np.argsort(mine[member], kind="stable")
    return np.flatnonzero(member)[order]


def _send_tagset(session: Session, tags: np.ndarray, receivers: Sequence[str]) -> None:
    """Step 4: this party's tags, sorted (so positions carry nothing), to each receiver."""
    ordered = np.sort(as_void(tags)).view(np.uint8).reshape(-1, TAG_BYTES)
    for r in receivers:
        if r == session.party:
            continue
        for start in range(0, max(len(ordered), 1), TAGSET_CHUNK):
            session.channel.send(r, "tags", ordered[start : start + TAGSET_CHUNK])


def _recv_tagset(session: Session, peer: str, m: int) -> np.ndarray:
    parts = []
    for _ in range(max(1, math.ceil(m / TAGSET_CHUNK))):
        part = session.channel.recv(peer, "tags")
        if not isinstance(part, np.ndarray) or part.ndim != 2 or part.shape[1] != TAG_BYTES:
            raise ProtocolAbort(
                f"tag set from {peer!r} is malformed", party=session.party, step="psi"
            )
        parts.append(part)
    got = np.concatenate(parts) if parts else np.empty((0, TAG_BYTES), np.uint8)
    if len(got) != m:
        raise ProtocolAbort(
            f"{peer!r} announced {m} keys but sent {len(got)} tags",
            party=session.party,
            step="psi",
        )
    return as_void(got)
