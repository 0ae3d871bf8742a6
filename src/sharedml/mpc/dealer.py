"""DealerProvider: a third party deals correlated randomness, compressed by PRG seeds.

Protocol (n computing parties P_0..P_{n-1} and a dealer D):

1. Setup: D draws a 128-bit AES key k_i for each P_i from :mod:`secrets` and
   sends it to P_i over the job's mutually authenticated channel.
2. For the t-th request (same order everywhere), every P_i draws its share of
   each *free* component from ``AES-CTR(k_i, 16t + j)``; P_0..P_{n-2} also
   draw their shares of the *derived* components that way. So P_0..P_{n-2}
   receive nothing per request: their material costs no traffic.
3. P_{n-1} sends D the request header (kind, counter, dims). D reproduces
   every party's streams, reconstructs the free secrets (e.g. a, b), computes
   the derived secrets (e.g. c = a·b) and sends P_{n-1} only its share of each
   derived component: ``c_{n-1} = c - Σ_{i<n-1} c_i``. P_{n-1} asks before it
   opens its masked values and reads the answer after, so the dealer's reply
   adds no round. Replies are tagged with the counter, so material may be
   requested ahead (a product asks for its truncation pair before it opens).
4. Prefetch: P_{n-1} may send several consecutive requests as one BUNDLE
   message (e.g. every request of a training batch, known from the previous
   batch of the same size); D answers them with one message. Same material,
   same counters: two messages instead of two per request.

Reveals: D learns the kinds and shapes of material (public in the protocol)
and only randomness it generated itself; no input, share of an input or
opened value ever reaches D. Each P_i learns only its own shares.

Security model: semi-honest. D must not collude with any computing party (D
knows every share of every mask: with one party's view it unmasks the other's
opened values). Channels are confidential (mTLS) so the keys stay secret.

Reference: Beaver, "Efficient multiparty protocols using circuit
randomization", CRYPTO 1991 (triples); seed compression as in SPDZ-style
trusted dealers and CrypTen's ``TrustedThirdParty`` provider.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np

from sharedml.crypto import ring
from sharedml.crypto.prg import KEY_BYTES, BufferPool, Prg
from sharedml.errors import ConfigError, ProtocolAbort
from sharedml.mpc.material import (
    Component,
    Kind,
    Request,
    combine,
    components,
    decode_bundle,
    derive,
    draw,
    encode_bundle,
)
from sharedml.mpc.provider import Material, RandomnessProvider
from sharedml.session import Session

_SCOPE = "dealer"
#: Bytes of fixed-mask limbs the dealer keeps (five float64 per element).
LIMB_CACHE_BYTES = 256 << 20


class DealerProvider(RandomnessProvider):
    """A computing party's end of the dealer protocol (see module docstring)."""

    name = "dealer"
    supports_bit_mul = True
    supports_prefetch = True
    supports_trunc_fixed = True

    def __init__(
        self, session: Session, dealer: str | None = None, *, scope: str = _SCOPE
    ) -> None:
        super().__init__()
        dealer = dealer or session.dealer
        if dealer is None:
            raise ConfigError(
                "the session names no dealer", party=session.party,
                remedy="give the session its dealer (Session(dealer=...)) or pass dealer=",
            )
        if dealer not in session.peers:
            raise ConfigError(
                f"dealer {dealer!r} is not a peer of this job {list(session.peers)}",
                party=session.party,
                remedy="list the dealer among the job's parties",
            )
        if dealer == session.party:
            raise ConfigError("the dealer cannot be a computing party", party=dealer)
        self.dealer = dealer
        self.helpers = (dealer,)
        self.parties = tuple(p for p in session.peers if p != dealer)
        self._channel = session.channel.scope(scope)
        self._party = session.party
        self._last = self._party == self.parties[-1]
        self._prg: Prg | None = None
        self._counter = 0
        self._fixed: dict[int, tuple[int, int]] = {}
        self._pool = BufferPool()
        self.bytes_received = 0
        self._queue: deque[tuple[Request, Material]] = deque()
        self._recording: list[tuple[Kind, tuple[int, ...], np.ndarray | None]] | None = None

    def _key(self) -> Prg:
        if self._prg is None:
            key = self._channel.recv(self.dealer, "key")
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise ProtocolAbort(
                    "the dealer sent a malformed key", party=self.dealer, step="dealer.setup"
                )
            self._prg = Prg(key)
        return self._prg

    def request(
        self, kind: Kind, dims: tuple[int, ...], rows: np.ndarray | None = None
    ) -> Material:
        dims = tuple(int(d) for d in dims)
        if self._queue:
            req, mat = self._queue.popleft()
            if req.kind != kind or req.dims != dims or not _same_rows(req.rows, rows):
                raise ProtocolAbort(
                    f"prefetched {req.kind.name}{req.dims} but the protocol asked for "
                    f"{kind.name}{dims}",
                    party=self._party,
                    step=f"dealer.{kind.name}",
                    remedy="prefetch exactly the requests the next step makes, in order",
                )
            return mat
        if self._recording is not None:
            self._recording.append((kind, dims, rows))
        req = self._next(kind, dims, rows)
        if self._last:
            self._channel.send(self.dealer, "req", req.encode())
        return self._material(req, lambda: self._receive(f"mat/{req.counter}", [req])[req.counter])

    def prefetch(self, plan: Sequence[tuple[Kind, tuple[int, ...], np.ndarray | None]]) -> None:
        """Ask now, in one message, for the material of the next requests ``plan``
        (kind, dims, rows) — every party passes the same plan. The following
        :meth:`request` calls are served from it in order and must match it."""
        if not plan:
            return
        reqs = [self._next(kind, tuple(int(d) for d in dims), rows) for kind, dims, rows in plan]
        if self._last:
            self._channel.send(self.dealer, "req", encode_bundle(reqs))
        got: dict[int, dict[str, np.ndarray]] = {}
        tag = f"mat/{reqs[0].counter}"

        def fetch(counter: int) -> dict[str, np.ndarray]:
            if not got:
                got.update(self._receive(tag, reqs))
            return got.pop(counter)

        for req in reqs:
            self._queue.append((req, self._material(req, partial(fetch, req.counter))))

    @contextmanager
    def recording(self) -> Iterator[list[tuple[Kind, tuple[int, ...], np.ndarray | None]]]:
        """Record the (kind, dims, rows) of every request made inside (a plan
        for :meth:`prefetch`)."""
        self._recording = []
        try:
            yield self._recording
        finally:
            self._recording = None

    def _next(self, kind: Kind, dims: tuple[int, ...], rows: np.ndarray | None) -> Request:
        self._key()
        self._counter += 1
        self.requests += 1
        req = Request(kind, self._counter, dims, rows)
        if kind == Kind.FIXED_MASK:
            self._fixed[req.counter] = (req.dims[0], req.dims[1])
        return req

    def _derived(self, req: Request) -> list[Component]:
        return [c for c in components(req, self._fixed.__getitem__) if c.derived]

    def _material(
        self, req: Request, receive: Callable[[], dict[str, np.ndarray]]
    ) -> Material:
        prg = self._key()
        comps = components(req, self._fixed.__getitem__)
        buffers: list[np.ndarray] = []
        shares = {}
        for j, c in enumerate(comps):
            if c.derived and self._last:
                continue
            buffers.append(self._pool.take(int(np.prod(c.shape))))
            shares[c.name] = draw(prg, req, j, c, buffers[-1])

        def give_back() -> None:
            for buf in buffers:
                self._pool.give(buf)

        if not self._last or not any(c.derived for c in comps):
            return Material(req.counter, shares, on_release=give_back)
        return Material(req.counter, shares, receive, give_back)

    def _receive(self, tag: str, reqs: list[Request]) -> dict[int, dict[str, np.ndarray]]:
        """The dealer's reply to ``reqs``: each request's derived shares by counter."""
        msg = self._channel.recv(self.dealer, tag)
        parts = [(r, self._derived(r)) for r in reqs]
        want = sum(c.wire_words for _, derived in parts for c in derived)
        if not isinstance(msg, np.ndarray) or msg.dtype != np.uint64 or msg.size != want:
            kinds = ",".join(r.kind.name for r in reqs)
            raise ProtocolAbort(
                f"dealer sent {getattr(msg, 'size', len(msg))} words for {kinds}, "
                f"expected {want}",
                party=self.dealer,
                step=f"dealer.{reqs[0].kind.name}",
            )
        self.bytes_received += msg.nbytes
        out: dict[int, dict[str, np.ndarray]] = {}
        at = 0
        for r, derived in parts:
            mine = out.setdefault(r.counter, {})
            for c in derived:
                mine[c.name] = c.unpack(msg[at : at + c.wire_words])
                at += c.wire_words
        return out

    def close(self) -> None:
        """Tell the dealer to stop (sent by the party that talks to it)."""
        if self._last:
            self._channel.send(self.dealer, "req", Request(Kind.STOP, 0, ()).encode())


class FixedMasks(dict[int, np.ndarray]):
    """The dealer's masks of fixed operands (``FixedOperand``), by id, and the
    limb split (:func:`ring.split`) of the most recently used ones.

    Every product with a fixed operand needs its mask's limbs; splitting a
    21,000 × 63 mask anew each time was a third of the dealer's CPU in a
    SecureBoost run. Limbs take five times the mask's memory, so at most
    ``budget`` bytes of them are kept, least recently used dropped first;
    everything goes with the dealer loop (when the runtime closes).
    """

    def __init__(self, budget: int = LIMB_CACHE_BYTES) -> None:
        super().__init__()
        self.budget = budget
        self._limbs: OrderedDict[int, ring.Limbs] = OrderedDict()
        self._bytes = 0

    def limbs(self, fid: int) -> ring.Limbs:
        got = self._limbs.get(fid)
        if got is not None:
            self._limbs.move_to_end(fid)
            return got
        got = ring.split(self[fid])
        size = got.nbytes
        if size <= self.budget:
            while self._bytes + size > self.budget:
                _, old = self._limbs.popitem(last=False)
                self._bytes -= old.nbytes
            self._limbs[fid] = got
            self._bytes += size
        return got

    @property
    def cached_bytes(self) -> int:
        return self._bytes


@dataclass
class DealerStats:
    requests: int = 0
    bytes_sent: int = 0


def serve_dealer(
    session: Session, parties: Sequence[str] | None = None, *, scope: str = _SCOPE
) -> DealerStats:
    """Run the dealer (see module docstring) until the last party says STOP.

    ``parties`` are the computing parties in share order (default: every peer
    but the dealer, in the job's order). One call serves one runtime (one
    ``DealerProvider`` per party) under ``scope``; serve several runtimes with
    several calls under different scopes. Between requests the dealer waits
    at most the channel's timeout (a :class:`~sharedml.errors.PeerTimeout`
    after that), so a job that computes locally for longer should raise it.
    """
    parties = tuple(parties or (p for p in session.peers if p != session.party))
    if len(parties) < 2:
        raise ConfigError("the dealer needs at least two computing parties", party=session.party)
    channel = session.channel.scope(scope)
    prgs = []
    for p in parties:
        key = secrets.token_bytes(KEY_BYTES)
        channel.send(p, "key", key)
        prgs.append(Prg(key))
    last = parties[-1]
    fixed = FixedMasks()
    pool = BufferPool()
    stats = DealerStats()
    previous = 0
    while True:
        req = Request.decode(channel.recv(last, "req"))
        if req.kind == Kind.STOP:
            return stats
        if req.counter <= previous:  # each stream position is dealt once
            raise ProtocolAbort(
                f"material request {req.counter} after {previous}: out of order or replayed",
                party=last,
                step="dealer",
            )
        batch = decode_bundle(req) if req.kind == Kind.BUNDLE else [req]
        previous = batch[-1].counter
        stats.requests += len(batch)
        replies = [r for r in (_deal(sub, prgs, fixed, pool) for sub in batch) if r is not None]
        if replies:
            reply = replies[0] if len(replies) == 1 else np.concatenate(replies)
            channel.send(last, f"mat/{req.counter}", reply)
            stats.bytes_sent += reply.nbytes


def _deal(req: Request, prgs: list[Prg], fixed: FixedMasks, pool: BufferPool) -> np.ndarray | None:
    buffers: list[np.ndarray] = []

    def drawn(prg: Prg, j: int, c: Component) -> np.ndarray:
        buffers.append(pool.take(int(np.prod(c.shape))))
        return draw(prg, req, j, c, buffers[-1])

    try:
        return _deal_with(req, prgs, fixed, drawn)
    finally:
        for buf in buffers:
            pool.give(buf)


def _deal_with(
    req: Request,
    prgs: list[Prg],
    fixed: FixedMasks,
    drawn: Callable[[Prg, int, Component], np.ndarray],
) -> np.ndarray | None:
    def shape_of(fid: int) -> tuple[int, int]:
        if fid not in fixed:
            raise ProtocolAbort(f"unknown fixed operand {fid}", step="dealer")
        m, k = fixed[fid].shape
        return m, k

    comps = components(req, shape_of)
    free: dict[str, np.ndarray] = {}
    for j, c in enumerate(comps):
        if c.derived:
            continue
        # the secret, summed in place into the first party's (pooled) draw
        free[c.name] = combine(c, [drawn(prg, j, c) for prg in prgs], in_place=True)
    if req.kind == Kind.FIXED_MASK:
        fixed[req.counter] = free["a"].copy()  # the pooled buffer goes back
        return None
    secrets_ = derive(req, free, fixed.__getitem__, fixed.limbs)
    derived = [(j, c) for j, c in enumerate(comps) if c.derived]
    if not derived:
        return None
    # the last party's corrections, written straight into the reply buffer
    out = np.empty(sum(c.wire_words for _, c in derived), dtype=np.uint64)
    at = 0
    for j, c in derived:
        words = out[at : at + c.wire_words]
        narrow = c.wire_bits < 64
        # full-width corrections are made in the reply buffer; narrow ones in
        # the secret's buffer (derive returns fresh arrays), then packed
        part = secrets_[c.name] if narrow else words.reshape(c.shape)
        if not narrow:
            np.copyto(part, secrets_[c.name])
        for prg in prgs[:-1]:
            share = drawn(prg, j, c)
            if c.boolean:
                part ^= share
            else:
                part -= share
        if narrow:
            c.pack(part, words)
        at += c.wire_words
    return out


def _same_rows(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))
