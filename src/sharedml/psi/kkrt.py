"""OT-based two-party PSI (KKRT): batched oblivious PRF, cuckoo hashing, no curve per id.

ECDH-PSI (:mod:`sharedml.psi.ecdh`) pays two elliptic-curve multiplications
per id of either set; here each id costs a few AES blocks, one BLAKE2b call and
its share of a bit-matrix transpose, and only ``w = 512`` public-key operations
are paid per run (the base OTs). Roles: the *receiver* ``R`` learns the
intersection; the *sender* ``S`` learns it too when it is also a result
receiver (step 8).

Protocol (``X`` the receiver's distinct key digests, ``Y`` the sender's;
``w = 512``; ``m = 1.27·|X| + 64`` bins, a multiple of 8):

1. Both parties exchange set sizes and a fingerprint of the parameters
   (done by the PSI front door, :func:`sharedml.psi.api.psi_digests`, which
   calls this module).
2. Base OTs (:mod:`sharedml.psi.ot`): ``S`` draws ``s ∈ {0,1}^w`` and obtains
   ``k_i^{s_i}`` of ``R``'s random seed pairs ``(k_i^0, k_i^1)``, ``i < w``.
3. ``S`` sends a fresh AES key for the pseudorandom code
   ``C(x, h) = AES_key(x ⊕ τ(h, 0)) || ... || AES_key(x ⊕ τ(h, 3))`` (512 bits).
4. ``R`` places every ``x`` in one of its three bins ``h_0(x), h_1(x), h_2(x)``
   (cuckoo hashing, no stash, with a fresh random salt; an insertion that
   fails retries locally with a new salt) and sends the salt, which fixes the
   bin functions for both sides.
5. OT extension in the KKRT form, in chunks of bins: with ``G`` the AES-CTR
   PRG, ``T`` the ``m × w`` matrix whose column ``i`` is ``G(k_i^0)`` and
   ``D`` the matrix whose row ``j`` is ``C(x_j, h_j)`` for the item ``x_j``
   placed in bin ``j`` by hash ``h_j`` (zero for an empty bin), ``R`` sends
   ``U = T ⊕ G(k^1) ⊕ D`` row by row. ``S`` computes
   ``Q = G(k^{s}) ⊕ (U ∧ s)`` column-wise, so that row ``q_j = t_j ⊕ (D_j ∧ s)``.
6. The oblivious PRF of bin ``j`` is ``F_j(z) = H(j, q_j ⊕ (C(z) ∧ s))``, with
   ``H`` BLAKE2b keyed by the run's salt, cut to 96 bits. ``R`` knows
   ``F_j(x_j, h_j) = H(j, t_j)`` for its own item only; ``S`` can evaluate every
   ``F_j`` and sends, for each of its ``y`` (rows in a secret random order), the
   three values ``F_{h_i(y)}(y, i)``.
7. ``R`` looks its values up among ``S``'s: ``x`` is in the intersection iff its
   value appears (a false match has probability ``|X|·3|Y|/2^96``).
8. If ``S`` is a receiver, ``R`` sends the positions of the matched rows of
   ``S``'s table, in the order of ``R``'s result; ``S`` undoes its permutation.

Reveals: ``R`` learns the intersection and ``|Y|``; ``S`` learns ``|X|`` (from
the sizes, as with ECDH-PSI) and, only if it is a receiver, the intersection.
``S`` sees ``R``'s ids only through ``U``, which is one-time-padded by the PRG
outputs ``G(k_i^{1-s_i})`` it cannot compute; ``R`` sees each non-matching
``y`` only as PRF values that are pseudorandom to it, because ``C(y) ⊕ C(x_j)``
has high weight and ``s`` is hidden. The order of ``S``'s rows is a secret
permutation, so step 8 tells ``S`` which of its rows matched and nothing of
which bin or hash function matched them. A retried cuckoo salt is chosen
locally; the salt ``S`` sees is conditioned only on the insertion succeeding.
With three hash functions and 1.27n bins, no-stash insertion fails with
probability about ``2^-40`` (PSTY19's measurements); our parallel insertion
settled within 200 of its 2000 rounds for every one of 1,000+ tries at
10–10^6 items, so a retry, and with it any dependence of the salt on ``X``,
is itself a rare event.

Security: semi-honest, two parties (no third party): the PSI row of the
trust model, the same as ECDH-PSI's (no non-collusion assumption; beyond the
output, the set sizes are revealed). Privacy rests on the base OTs (CDH on
Edwards25519), AES as a PRF/PRG and BLAKE2b as a random oracle. What breaks
if a party deviates: ``R`` can put the codeword of any id it likes in a bin,
so it can test up to ``m`` (about 1.27 |X|) ids of its choice for membership
in ``Y``, which are not necessarily its declared set; ``S`` can send any PRF
values, making ``R`` miss true matches, or list the same value in several
rows. Neither learns the other's non-matching ids. Reference: V. Kolesnikov, R. Kumaresan, M. Rosulek,
N. Trieu, "Efficient batched oblivious PRF with applications to private set
intersection", ACM CCS 2016; the OT extension is Ishai–Kilian–Nissim–Petrank,
CRYPTO 2003; no-stash cuckoo parameters follow Pinkas–Schneider–Tkachenko–
Yanai, EUROCRYPT 2019.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sharedml.errors import ProtocolAbort
from sharedml.psi.ot import base_ot_receive, base_ot_send, prg_streams, prg_take, transpose_bits
from sharedml.psi.rows import secret_permutation
from sharedml.session import Session

VERSION = 1
WIDTH = 512
ROW_BYTES = WIDTH // 8
HASHES = 3
EXPANSION = 1.27
SLACK = 64
TAG_BYTES = 12
#: Bins per OT-extension chunk (a multiple of 8); one chunk of ``U`` is 2 MB.
CHUNK = 1 << 15
#: Rows of the sender's value table per message.
TABLE_CHUNK = 1 << 16
MAX_TRIES = 20
#: Largest set (bin indices are hashed as uint32).
MAX_ITEMS = 1 << 31
STEP = "psi/kkrt"


def bin_count(n: int) -> int:
    """Bins for ``n`` items: ``1.27 n + 64``, rounded up to a multiple of 8."""
    m = math.ceil(EXPANSION * n) + SLACK
    return m + (-m % 8)


def _ecb(key: bytes, blocks: np.ndarray) -> np.ndarray:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return np.frombuffer(enc.update(np.ascontiguousarray(blocks).tobytes()), np.uint8)


def bins_of(d16: np.ndarray, salt: bytes, m: int) -> np.ndarray:
    """The three candidate bins of each item, ``(n, 3)`` uint32 in ``[0, m)`` (``m ≤ 2^32``)."""
    if not len(d16):
        return np.zeros((0, HASHES), np.uint32)
    words = _ecb(salt, d16).view(np.uint32).reshape(-1, 4)[:, :HASHES].astype(np.uint64)
    return ((words * np.uint64(m)) >> np.uint64(32)).astype(np.uint32)


def cuckoo(bins: np.ndarray, m: int, rounds: int = 2000) -> tuple[np.ndarray, np.ndarray] | None:
    """Place each item in one of its bins, at most one per bin; ``None`` if it does not settle.

    Parallel cuckoo insertion: every unplaced item claims its current choice
    of bin; one claimant per bin wins and evicts the occupant; losers and
    evicted items move on to one of their other two choices at random.
    Returns ``(table, which)``: the item in each bin (-1 if empty) and the
    hash index that put it there.
    """
    n = len(bins)
    table = np.full(m, -1, np.int64)
    which = np.zeros(m, np.int8)
    choice = np.zeros(n, np.int8)
    pending = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(secrets.randbits(64))
    for _ in range(rounds):
        if not len(pending):
            return table, which
        want = bins[pending, choice[pending]]
        claimed, first = np.unique(want, return_index=True)
        winners = pending[first]
        evicted = table[claimed]
        evicted = evicted[evicted >= 0]
        table[claimed] = winners
        which[claimed] = choice[winners]
        losers = np.delete(pending, first)
        moved = np.concatenate([losers, evicted])
        choice[moved] = (choice[moved] + 1 + rng.integers(0, 2, len(moved), dtype=np.int8)) % HASHES
        pending = rng.permutation(moved)
    return None


def codes(key: bytes, d16: np.ndarray, hidx: np.ndarray) -> np.ndarray:
    """The pseudorandom code ``C(x, h)``: ``(k, 64)`` bytes for items ``d16`` under hashes ``hidx``."""
    blocks = np.repeat(np.ascontiguousarray(d16)[:, None, :], 4, axis=1)
    tweak = (1 + 4 * np.asarray(hidx, np.uint8)[:, None] + np.arange(4, dtype=np.uint8)).astype(np.uint8)
    blocks[:, :, 15] ^= tweak
    return _ecb(key, blocks).reshape(-1, ROW_BYTES)


def prf_tags(key: bytes, bins: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``H(j, row)``: BLAKE2b keyed by ``key`` over (bin index, 64-byte row), cut to 12 bytes."""
    k = len(rows)
    buf = np.empty((k, 4 + ROW_BYTES), np.uint8)
    buf[:, :4] = np.asarray(bins, np.uint32).reshape(-1, 1).view(np.uint8)
    buf[:, 4:] = rows
    mv = memoryview(buf.tobytes())
    step = 4 + ROW_BYTES
    b2 = hashlib.blake2b
    out = b"".join(
        [b2(mv[i : i + step], digest_size=TAG_BYTES, key=key).digest() for i in range(0, k * step, step)]
    )
    return np.frombuffer(out, np.uint8).reshape(k, TAG_BYTES)


def lookup(mine: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``mine`` (``(k, 12)`` tags) appear in ``theirs``; returns (mask, index into theirs)."""
    k = len(mine)
    if not len(theirs) or not k:
        return np.zeros(k, bool), np.zeros(k, np.int64)
    tk = np.ascontiguousarray(theirs[:, :8]).view(np.uint64).ravel()
    te = np.ascontiguousarray(theirs[:, 8:]).view(np.uint32).ravel()
    mk = np.ascontiguousarray(mine[:, :8]).view(np.uint64).ravel()
    me = np.ascontiguousarray(mine[:, 8:]).view(np.uint32).ravel()
    order = np.argsort(tk, kind="stable")
    sk = tk[order]
    pos = np.minimum(np.searchsorted(sk, mk), len(sk) - 1)
    idx = order[pos]
    hit = (sk[pos] == mk) & (te[idx] == me)
    # Equal 64-bit prefixes with different tails (probability ~2^-40): scan the run.
    for j in np.flatnonzero((sk[pos] == mk) & ~hit):
        p = int(pos[j]) + 1
        while p < len(sk) and sk[p] == mk[j]:
            if te[order[p]] == me[j]:
                hit[j], idx[j] = True, order[p]
                break
            p += 1
    return hit, idx


def _check(obj: object, shape: tuple[int, ...], party: str, what: str) -> np.ndarray:
    if not isinstance(obj, np.ndarray) or obj.dtype != np.uint8 or obj.shape != shape:
        raise ProtocolAbort(
            f"{what} has shape {getattr(obj, 'shape', type(obj).__name__)} "
            f"{getattr(obj, 'dtype', '')}, expected {shape} uint8",
            party=party,
            step=STEP,
            remedy="check that both parties run the same sharedml version and PSI parameters",
        )
    return obj


def _as_receiver(session: Session, peer: str, d16: np.ndarray, their_n: int, peer_receives: bool) -> np.ndarray:
    """Role ``R``: returns this party's matched item indices, in the agreed order."""
    ch = session.channel
    party = session.party
    seeds = base_ot_send(session, peer, WIDTH, tag="kkrt/bot")
    code_key = bytes(_check(ch.recv(peer, "kkrt/code"), (16,), party, "the code key"))
    n = len(d16)
    m = bin_count(n)
    for _ in range(MAX_TRIES):
        salt = secrets.token_bytes(16)
        placed = cuckoo(bins_of(d16, salt, m), m)
        if placed is not None:
            break
    else:  # pragma: no cover - probability below 2^-600
        raise ProtocolAbort("cuckoo hashing failed on every salt", party=party, step=STEP)
    table, which = placed
    ch.send(peer, "kkrt/salt", np.frombuffer(salt, np.uint8).copy())
    g0, g1 = prg_streams(seeds[:, 0]), prg_streams(seeds[:, 1])
    tag_parts: list[np.ndarray] = []
    bin_parts: list[np.ndarray] = []
    for start in range(0, m, CHUNK):
        size = min(CHUNK, m - start)
        c0 = prg_take(g0, size // 8)
        c1 = prg_take(g1, size // 8)
        c1 ^= c0
        u = transpose_bits(c1)
        occ = table[start : start + size]
        full = np.flatnonzero(occ >= 0)
        u[full] ^= codes(code_key, d16[occ[full]], which[start + full])
        ch.send(peer, "kkrt/u", u)
        t = transpose_bits(c0)
        tag_parts.append(prf_tags(salt, start + full, t[full]))
        bin_parts.append(start + full)
    mine = np.concatenate(tag_parts) if tag_parts else np.empty((0, TAG_BYTES), np.uint8)
    my_bins = np.concatenate(bin_parts) if bin_parts else np.empty(0, np.int64)
    prf_table = np.empty((their_n, HASHES, TAG_BYTES), np.uint8)
    for start in range(0, max(their_n, 1), TABLE_CHUNK):
        want = min(TABLE_CHUNK, their_n - start)
        prf_table[start : start + want] = _check(
            ch.recv(peer, "kkrt/table"), (want, HASHES, TAG_BYTES), party,
            "a chunk of the sender's PRF table",
        )
    theirs = prf_table.reshape(-1, TAG_BYTES)
    hit, idx = lookup(mine, theirs)
    order = np.lexsort(mine[hit].T[::-1])  # by tag bytes: an order that says nothing of rows
    items = table[my_bins[hit]][order]
    if peer_receives:
        ch.send(peer, "kkrt/matches", (idx[hit][order] // HASHES).astype(np.int64))
    return items


def _as_sender(session: Session, peer: str, d16: np.ndarray, their_n: int, receives: bool) -> np.ndarray | None:
    """Role ``S``: returns this party's matched item indices (if it receives), in ``R``'s order."""
    ch = session.channel
    party = session.party
    choice = np.frombuffer(secrets.token_bytes(ROW_BYTES), np.uint8)
    bits = np.unpackbits(choice, bitorder="little")
    seeds = base_ot_receive(session, peer, bits, tag="kkrt/bot")
    code_key = secrets.token_bytes(16)
    ch.send(peer, "kkrt/code", np.frombuffer(code_key, np.uint8).copy())
    salt = bytes(_check(ch.recv(peer, "kkrt/salt"), (16,), party, "the cuckoo salt"))
    m = bin_count(their_n)
    n = len(d16)
    flat = bins_of(d16, salt, m).ravel()
    by_bin = np.argsort(flat, kind="stable")
    sorted_bins = flat[by_bin]
    del flat
    gs = prg_streams(seeds)
    # The table is written in its secret row order directly: row perm^-1[y] holds y.
    perm = secret_permutation(n)
    slot = np.empty(n, np.int64)
    slot[perm] = np.arange(n)
    values = np.empty((n * HASHES, TAG_BYTES), np.uint8)
    for start in range(0, m, CHUNK):
        size = min(CHUNK, m - start)
        u = _check(ch.recv(peer, "kkrt/u"), (size, ROW_BYTES), party, "a chunk of the OT-extension matrix")
        q = transpose_bits(prg_take(gs, size // 8))
        q ^= u & choice
        lo, hi = np.searchsorted(sorted_bins, [start, start + size])
        sel = by_bin[lo:hi]
        b = sorted_bins[lo:hi].astype(np.int64)
        item, hidx = np.divmod(sel, HASHES)
        rows = q[b - start] ^ (codes(code_key, d16[item], hidx) & choice)
        values[slot[item] * HASHES + hidx] = prf_tags(salt, b, rows)
    del by_bin, sorted_bins, slot
    table = values.reshape(n, HASHES, TAG_BYTES)
    for start in range(0, max(n, 1), TABLE_CHUNK):
        ch.send(peer, "kkrt/table", np.ascontiguousarray(table[start : start + TABLE_CHUNK]))
    if not receives:
        return None
    got = ch.recv(peer, "kkrt/matches")
    if (
        not isinstance(got, np.ndarray)
        or got.ndim != 1
        or got.dtype.kind not in "iu"
        or (len(got) and (got.min() < 0 or got.max() >= n))
        or len(np.unique(got)) != len(got)
    ):
        raise ProtocolAbort("the receiver's match list is malformed", party=party, step=STEP)
    return perm[got.astype(np.int64)]


def kkrt_psi(
    session: Session, unique: np.ndarray, sizes: dict[str, int], receivers: Sequence[str]
) -> np.ndarray | None:
    """Run the protocol on this party's distinct ``(n, 32)`` digests (see the module docstring).

    Returns indices into ``unique`` of the intersection, in the order both
    receivers share, or ``None`` at a party that does not receive.
    """
    first, second = session.peers
    for who, n in sizes.items():
        if not 0 <= n <= MAX_ITEMS:
            raise ProtocolAbort(
                f"party {who!r} announced a set of {n} keys; KKRT takes 0 to {MAX_ITEMS}",
                party=session.party,
                step=STEP,
            )
    r = first if first in receivers else second
    peer = second if session.party == first else first
    d16 = np.ascontiguousarray(unique[:, :16])
    if session.party == r:
        return _as_receiver(session, peer, d16, sizes[peer], peer in receivers)
    return _as_sender(session, peer, d16, sizes[r], session.party in receivers)
