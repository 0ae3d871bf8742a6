"""Bucketed PSI: KKRT on B bucket pairs, run by each party's Ray lanes (8.5-2).

Two parties, each with its own Ray cluster (:class:`~sharedml.scale.runtime.RayCompute`).
The node processes talk over the job's channel; the heavy work runs on
*lanes* (:mod:`sharedml.scale.lane`), actors that talk to the peer's lanes
over the party-to-party mTLS transport. Every party's result equals that of
one KKRT run over the whole sets (:func:`sharedml.psi.psi_digests`), in the
order :func:`sharedml.psi.align_rows` puts it (by key digest).

Protocol (``X`` this party's distinct digests; both parties alike):

1. Agreement (:func:`sharedml.psi.psi_digests`' step 1): every party's
   distinct count ``n`` and a fingerprint of the parameters that names this
   protocol, so a party that runs plain KKRT against a bucketed one stops
   with a :class:`ConfigError`. Then (1b) each party sends its lane count
   ``W`` and its ``bucket_rows``; both derive ``B = ceil(max n / min
   bucket_rows)`` buckets and ``L = min W`` lane pairs.
2. Bucket key by coin tossing: each party sends ``SHA-256(c)`` of a fresh
   32-byte ``c``, then ``c``; a revealed ``c`` that does not match its
   commitment aborts. ``k = SHA-256(c_1 || c_2)[:16]`` in party order, so
   neither chose it.
3. Each party puts digest ``d`` in bucket ``AES_k(d[:16]) mod B``
   (:func:`~sharedml.scale.buckets.bucket_of`) and pads every bucket with
   random digests to the public capacity ``cap(n, B)`` (mean + 8σ + 16,
   :func:`~sharedml.scale.buckets.capacity`). Each party sends one bit: did a
   bucket overflow its capacity; if either did (probability below 1e-15 per
   bucket), both return to step 2.
4. Lanes: each party has taken its ``W`` lanes (Ray actors) before step
   1b — warm ones its node kept from an earlier run (:mod:`~sharedml.scale.lanes`),
   the rest started then, so they boot while the parties agree and bucket;
   it sends the addresses of the first ``L`` (the others idle); lane
   ``i`` serves buckets ``i, i + L, i + 2L, ...`` in that order against the
   peer's lane ``i``, as the bucket's own job ``<job>/bpsi-<run>/<b>``.
5. Per bucket, the two lanes run KKRT (:mod:`sharedml.psi.kkrt`: its steps
   2-8) on the padded buckets, with the receivers of the whole run.
6. Both parties say they are done (so no lane stops while the peer's lane
   still closes its stream); each party maps bucket positions back to its rows, drops padding (it
   never matches: a false match has probability ~2^-96 per pair) and sorts
   the union by key digest.

Reveals: beyond single-run KKRT (the intersection to receivers, ``n`` of
each party), each party's lane count and ``bucket_rows`` (configuration).
Bucket sizes reveal nothing more: every bucket is padded to a capacity that
depends only on ``n`` and ``B``; which bucket an id falls in is a
pseudorandom function of it under a key neither party chose. The overflow
bit of step 3 is one bit of leakage with probability below 1e-15 per
bucket. A receiver learns which bucket each intersecting id is in, which it
can compute itself. Each party's Ray cluster sees that party's digests and
private key (its lanes act under its certificate): it must be the party's
own.

Security: semi-honest, two parties, as KKRT (:mod:`sharedml.psi.kkrt`); the
coin toss of step 2 makes the key uniform if either party is honest.
References: KKRT (CCS 2016); bucketing as in Pinkas, Schneider, Zohner,
"Scalable private set intersection based on OT extension", ACM TOPS 2018
(hashing to bins, each solved independently).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence

import numpy as np

from sharedml.crypto.pki import Identity
from sharedml.errors import ConfigError, ProtocolAbort
from sharedml.psi.rows import as_void
from sharedml.scale import buckets as bk
from sharedml.scale import lanes as lanes_pool
from sharedml.scale.lane import PsiLane
from sharedml.scale.runtime import Progress, RayCompute, _no_progress
from sharedml.session import Session
from sharedml.transport.base import Channel

VERSION = 1
STEP = "psi/bucketed"
KEY_TRIES = 4
#: Buckets queued per lane beyond the one it runs (object-store back-pressure).
QUEUED_PER_LANE = 1


def bucketed_psi(
    session: Session,
    unique: np.ndarray,
    sizes: dict[str, int],
    receivers: Sequence[str],
    compute: RayCompute,
    identity: Identity,
    progress: Progress = _no_progress,
) -> np.ndarray | None:
    """Steps 1b-6 on this party's distinct ``(n, 32)`` digests (see the module docstring).

    Called by :func:`sharedml.psi.psi_digests` after its step 1 (sizes and a
    parameter fingerprint that names the bucketed protocol). Returns indices
    into ``unique`` of the intersection, sorted by digest, or ``None`` at a
    party that does not receive.
    """
    _check_call(session, receivers, identity)
    # Lanes: the node's warm ones, the rest started now, so their processes boot while
    # the parties agree and bucket (and a slower peer still hashes its ids).
    kept, actors = lanes_pool.take(compute, PsiLane, identity, compute.workers,
                                   compute.record is not None)
    try:
        ch = session.channel.scope("bpsi")
        n_buckets, lanes = _agree(session, ch, sizes, compute)
        key, rows_of, caps = _bucket(session, ch, unique, sizes, n_buckets)
        found = _run_lanes(session, ch, compute, actors[:lanes], unique, rows_of, caps, key,
                           receivers, progress)
    except BaseException:
        lanes_pool.discard(compute, actors, STEP)
        raise
    compute.record_usage(actors, step=STEP)
    lanes_pool.give_back(kept, actors)
    if found is None:
        return None
    return found[np.argsort(as_void(unique[found]), kind="stable")]


def _check_call(session: Session, receivers: Sequence[str], identity: Identity) -> None:
    if len(session.peers) != 2:
        raise ConfigError(
            f"bucketed PSI runs between two parties, this job has {len(session.peers)}",
            party=session.party, step=STEP, remedy="use the ecdh protocol without compute: ray",
        )
    if identity.party != session.party:
        raise ConfigError(
            f"the lanes' certificate names {identity.party!r}, not this party",
            party=session.party, step=STEP, remedy="give the node's own certificate and key",
        )


def _agree(
    session: Session, ch: Channel, sizes: dict[str, int], compute: RayCompute
) -> tuple[int, int]:
    """Step 1b: lane counts and bucket rows; returns (B, L)."""
    cfg = compute.config
    got = ch.all_gather("shape", np.array([cfg.workers, cfg.bucket_rows], np.int64))
    table = {p: np.asarray(v, np.int64).ravel() for p, v in got.items()}
    for p, row in table.items():
        if row.shape != (2,) or (row < 1).any():
            raise ProtocolAbort(f"party {p!r} announced malformed lanes or bucket rows",
                                party=session.party, step=STEP)
    bucket_rows = min(int(row[1]) for row in table.values())
    lanes = min(int(row[0]) for row in table.values())
    return bk.bucket_count(sizes, bucket_rows), lanes


def _coin_toss(session: Session, ch: Channel) -> bytes:
    """Step 2: a 128-bit key neither party chose."""
    mine = secrets.token_bytes(32)
    commits = ch.all_gather("commit", np.frombuffer(hashlib.sha256(mine).digest(), np.uint8))
    opened = ch.all_gather("open", np.frombuffer(mine, np.uint8))
    parts = []
    for p in session.peers:
        c = bytes(np.asarray(opened[p], np.uint8))
        if hashlib.sha256(c).digest() != bytes(np.asarray(commits[p], np.uint8)):
            raise ProtocolAbort(f"party {p!r} opened a coin that does not match its commitment",
                                party=session.party, step=STEP)
        parts.append(c)
    return hashlib.sha256(b"".join(parts)).digest()[:16]


def _bucket(
    session: Session, ch: Channel, unique: np.ndarray, sizes: dict[str, int], n_buckets: int
) -> tuple[bytes, list[np.ndarray], dict[str, int]]:
    """Steps 2-3: the key, this party's rows per bucket, and every party's capacity."""
    caps = {p: bk.capacity(n, n_buckets) for p, n in sizes.items()}
    for _ in range(KEY_TRIES):
        key = _coin_toss(session, ch)
        rows_of = bk.members(bk.bucket_of(unique, key, n_buckets), n_buckets)
        over = max((len(r) for r in rows_of), default=0) > caps[session.party]
        flags = ch.all_gather("overflow", np.array([int(over)], np.int64))
        if not any(int(np.asarray(f).ravel()[0]) for f in flags.values()):
            return key, rows_of, caps
    raise ProtocolAbort(  # pragma: no cover - probability below 1e-60
        f"a bucket overflowed its capacity under {KEY_TRIES} keys", party=session.party, step=STEP
    )


def _run_lanes(
    session: Session, ch: Channel, compute: RayCompute, actors: list[object],
    unique: np.ndarray, rows_of: list[np.ndarray], caps: dict[str, int], key: bytes,
    receivers: Sequence[str], progress: Progress,
) -> np.ndarray | None:
    """Steps 4-6 on the agreed lanes: addresses, buckets, merge; this party's matched
    rows of ``unique``."""
    (peer,) = session.others
    mine = compute.get([a.address.remote() for a in actors],  # type: ignore[attr-defined]
                       step=STEP, what="lane start")
    got = ch.all_gather("lanes", json.dumps(mine).encode())
    theirs = _lane_addresses(session, peer, got[peer], len(actors))
    job = f"{session.channel.job}/bpsi-{key[:4].hex()}"
    parts = _drive(session, compute, actors, theirs, job, unique, rows_of, caps, receivers,
                   progress)
    # Lanes stop only when both parties' lanes have closed their channels:
    # a lane's server must outlive the peer's last acknowledgement.
    ch.all_gather("done", np.array([len(parts)], np.int64))
    if compute.record is not None:
        wires = compute.get([a.wire.remote() for a in actors],  # type: ignore[attr-defined]
                            step=STEP, what="wire")
        for wire in wires:
            compute.record.extend(wire)
    if session.party not in receivers:
        return None
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _lane_addresses(session: Session, peer: str, raw: object, lanes: int) -> list[str]:
    """The peer's lane addresses (host:port text), checked."""
    try:
        theirs = json.loads(bytes(raw).decode())  # type: ignore[call-overload]
    except (TypeError, ValueError):
        theirs = None
    if (not isinstance(theirs, list) or len(theirs) < lanes
            or not all(isinstance(a, str) and 0 < len(a) < 256 for a in theirs)):
        raise ProtocolAbort(f"party {peer!r} announced malformed lane addresses ({lanes} agreed)",
                            party=session.party, step=STEP)
    return theirs[:lanes]


def _drive(
    session: Session, compute: RayCompute, actors: list[object], theirs: list[str], job: str,
    unique: np.ndarray, rows_of: list[np.ndarray], caps: dict[str, int],
    receivers: Sequence[str], progress: Progress,
) -> list[np.ndarray]:
    """Step 5 with back-pressure: a lane holds at most one bucket beyond the one it runs."""
    ray = compute.ray
    (peer,) = session.others
    n_buckets, lanes = len(rows_of), len(actors)
    flying: dict[object, int] = {}
    out: dict[int, np.ndarray] = {}
    done = 0

    def submit(b: int) -> None:
        lane = actors[b % lanes]
        digests = bk.padded(unique[rows_of[b]], caps[session.party])
        ref = lane.run.remote(  # type: ignore[attr-defined]
            f"{job}/{b}", session.peers, {peer: theirs[b % lanes]}, digests, caps, receivers,
            session.channel.timeout)
        flying[ref] = b

    def land() -> None:
        nonlocal done
        ready, _ = ray.wait(list(flying), num_returns=1)
        b = flying.pop(ready[0])
        idx = compute.get(ready[0], step=STEP, what=f"bucket {b} (lane {b % lanes})")
        if idx is not None:
            idx = np.asarray(idx, np.int64)
            out[b] = rows_of[b][idx[idx < len(rows_of[b])]]
        done += 1
        progress(done / n_buckets, f"PSI bucket {b} done ({done} of {n_buckets})")

    for b in range(n_buckets):
        while len(flying) >= lanes * (1 + QUEUED_PER_LANE):
            land()
        submit(b)
    while flying:
        land()
    return [out[b] for b in sorted(out)]
