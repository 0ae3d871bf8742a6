"""A shaping TCP proxy: a WAN between parties on one machine (latency, jitter, bandwidth, loss).

``netem`` is not available where the tests and benchmarks run, so WAN links
are emulated in user space: a :class:`ShapingProxy` listens on loopback and
forwards each connection to its target, holding every segment of bytes
until the time a link with the given :class:`LinkProfile` would deliver it.
It shapes both directions of a connection (the reverse direction carries
TLS handshakes, HTTP/2 window updates and replies). The proxy never reads
what it carries: TLS stays end to end between the parties.

The model, per direction of a link (a :class:`Pipe`), for a segment of
``n`` bytes read at time ``t``:

1. **bandwidth**: the link sends one segment at a time; the segment starts
   at ``max(t, link free)`` and takes ``8 n / bandwidth`` seconds;
2. **latency and jitter**: it arrives ``rtt/2`` plus a uniform draw in
   ``[-jitter, +jitter]`` (never below zero) after it was sent, and never
   before the connection's previous segment (TCP delivers in order, so a
   delayed segment holds up the ones behind it);
3. **loss**: each 1448-byte packet is lost with probability ``loss``; TCP
   resends it after a fast retransmit, one ``rtt`` later (optimistic: a
   tail loss waits for a timeout), and throughput is capped by TCP's
   response to loss, ``1.22 · MSS / (rtt · sqrt(loss))`` (Mathis et al.,
   "The macroscopic behavior of the TCP congestion avoidance algorithm",
   CCR 1997);
4. **connection set-up**: a connection's first bytes leave one ``rtt``
   after it was accepted (TCP's handshake), TLS's round trips then cross
   the link like any other bytes.

Delivery times are kept to ±0.5 ms (the event loop's timers have a
millisecond's resolution; the proxy wakes half of it early). Segments are
at most :data:`SEGMENT` bytes so a bulk transfer flows through
the link as a pipeline rather than store-and-forward; at most
``max(4 MiB, 4 × bandwidth-delay product)`` bytes are in flight per direction
of a connection, beyond which the proxy stops reading and TCP's own flow
control holds the sender.

Randomness (jitter, loss) comes from an explicit seeded
:class:`numpy.random.Generator`: emulation noise, not secrets (STYLE.md 9).
:mod:`sharedml.transport.wan` places one proxy on each directed link between
named parties, in one process or across a :func:`~sharedml.standalone.processes.run_in_processes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from sharedml.errors import ConfigError

#: Largest piece of a stream scheduled as one unit (bytes).
SEGMENT = 16 << 10
#: TCP's payload per packet on an Ethernet path (bytes), for the loss model.
MSS = 1448
_READ = 256 << 10
#: The event loop's timers fire up to a millisecond late (epoll's resolution):
#: waking half of that early makes deliveries on time on average, ±0.5 ms.
_TIMER_SLACK = 0.0005


@dataclass(frozen=True)
class LinkProfile:
    """One WAN link, the same both ways: round-trip time, jitter, bandwidth and packet loss.

    ``bandwidth_mbps=None`` means unlimited; ``loss`` is the probability that
    a packet is lost (needs ``rtt_ms > 0``).
    """

    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth_mbps: float | None = None
    loss: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.rtt_ms < 0 or self.jitter_ms < 0 or not 0.0 <= self.loss < 1.0:
            raise ConfigError(
                f"link profile {self.name or self}: rtt and jitter must be >= 0 and loss in [0, 1)"
            )
        if self.bandwidth_mbps is not None and self.bandwidth_mbps <= 0:
            raise ConfigError(f"link profile {self.name or self}: bandwidth must be positive")
        if self.loss and not self.rtt_ms:
            raise ConfigError(f"link profile {self.name or self}: loss needs a round-trip time")

    @property
    def one_way_s(self) -> float:
        return self.rtt_ms / 2000.0

    @property
    def bytes_per_s(self) -> float:
        """The link's rate after the loss cap (``inf`` when unlimited)."""
        rate = math.inf if self.bandwidth_mbps is None else self.bandwidth_mbps * 1e6 / 8
        if self.loss:
            rate = min(rate, 1.22 * MSS / (self.rtt_ms / 1000.0 * math.sqrt(self.loss)))
        return rate

    @property
    def window_bytes(self) -> int:
        """Bytes in flight per direction of a connection before the proxy stops reading."""
        bdp = 0.0 if math.isinf(self.bytes_per_s) else self.bytes_per_s * self.rtt_ms / 1000.0
        return int(max(4 << 20, 4 * bdp))


#: The profiles the WAN benchmark uses (``bench/wan.py``).
PROFILES = {
    "wan10": LinkProfile(rtt_ms=10.0, bandwidth_mbps=1000.0, name="10 ms RTT, 1 Gbit/s"),
    "wan50": LinkProfile(rtt_ms=50.0, bandwidth_mbps=100.0, name="50 ms RTT, 100 Mbit/s"),
}


@dataclass
class PipeStats:
    bytes: int = 0
    segments: int = 0
    lost_packets: int = 0


class Pipe:
    """One direction of a link: when each segment sent into it comes out (module doc, 1-3).

    Connections that share the direction share its bandwidth.
    """

    def __init__(self, profile: LinkProfile, rng: np.random.Generator) -> None:
        self.profile = profile
        self.rng = rng
        self.free_at = 0.0
        self.stats = PipeStats()

    def arrival(self, nbytes: int, now: float, previous: float) -> float:
        """When ``nbytes`` handed in at ``now`` come out, after the stream's ``previous`` segment."""
        p = self.profile
        start = max(now, self.free_at)
        self.free_at = start + (0.0 if math.isinf(p.bytes_per_s) else nbytes / p.bytes_per_s)
        delay = p.one_way_s
        if p.jitter_ms:
            delay = max(delay + float(self.rng.uniform(-1.0, 1.0)) * p.jitter_ms / 1000.0, 0.0)
        if p.loss:
            lost = int(self.rng.binomial(math.ceil(nbytes / MSS), p.loss))
            self.stats.lost_packets += lost
            delay += p.rtt_ms / 1000.0 if lost else 0.0
        self.stats.bytes += nbytes
        self.stats.segments += 1
        return max(self.free_at + delay, previous)


class _InFlight:
    """Segments of one direction of a connection, in order, each with its delivery time."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.segments: deque[tuple[float, bytes]] = deque()
        self.ended = False
        self._changed = asyncio.Event()

    async def room(self, n: int) -> None:
        """Wait while ``n`` more bytes would pass ``limit`` (back-pressure on the reader)."""
        while self.used and self.used + n > self.limit:
            self._changed.clear()
            await self._changed.wait()

    def put(self, due: float, segment: bytes) -> None:
        self.used += len(segment)
        self.segments.append((due, segment))
        self._changed.set()

    def end(self) -> None:
        self.ended = True
        self._changed.set()

    async def next_due(self) -> float | None:
        """When the oldest segment is due (``None``: the stream ended and all went out)."""
        while not self.segments:
            if self.ended:
                return None
            self._changed.clear()
            await self._changed.wait()
        return self.segments[0][0]

    def take_due(self, now: float) -> bytes:
        """Every segment due by ``now``, joined (the first is always taken)."""
        out = [self.segments.popleft()[1]]
        while self.segments and self.segments[0][0] <= now:
            out.append(self.segments.popleft()[1])
        data = b"".join(out) if len(out) > 1 else out[0]
        self.used -= len(data)
        self._changed.set()
        return data


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    pipe: Pipe,
    not_before: float,
) -> None:
    """Carry one direction of a connection through ``pipe`` until end of stream."""
    loop = asyncio.get_running_loop()
    flight = _InFlight(pipe.profile.window_bytes)

    async def take_in() -> None:
        last = 0.0
        try:
            while data := await reader.read(_READ):
                for at in range(0, len(data), SEGMENT):
                    segment = data[at : at + SEGMENT]
                    await flight.room(len(segment))
                    last = pipe.arrival(len(segment), max(loop.time(), not_before), last)
                    flight.put(last, segment)
        except (ConnectionError, OSError):
            pass
        finally:
            flight.end()

    async def deliver() -> None:
        while (due := await flight.next_due()) is not None:
            if (wait := due - loop.time() - _TIMER_SLACK) > 0:
                await asyncio.sleep(wait)
            writer.write(flight.take_due(loop.time()))  # what fell due meanwhile goes too
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    feeder = asyncio.ensure_future(take_in())
    try:
        await deliver()
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass
class ShapingProxy:
    """Listens on ``host:port`` and forwards each connection to ``target()`` through two pipes.

    ``target`` is awaited per connection (so a proxy may exist before the
    server it leads to); ``forward`` shapes what clients send, ``backward``
    what the target answers. Runs on the event loop that calls :meth:`start`.
    """

    target: Callable[[], Awaitable[tuple[str, int]]]
    forward: Pipe
    backward: Pipe
    host: str = "127.0.0.1"
    port: int = 0
    connections: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)

    async def start(self) -> ShapingProxy:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        opened = asyncio.get_running_loop().time() + self.forward.profile.rtt_ms / 1000.0
        try:
            host, port = await self.target()
            t_reader, t_writer = await asyncio.open_connection(host, port)
        except OSError:  # the target never joined (TimeoutError) or refused
            c_writer.close()
            return
        for w in (c_writer, t_writer):
            _no_delay(w)
        pumps = [
            asyncio.ensure_future(_pump(c_reader, t_writer, self.forward, opened)),
            asyncio.ensure_future(_pump(t_reader, c_writer, self.backward, opened)),
        ]
        try:  # both directions run to their end of stream; a reset on either ends both
            await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            pass  # the proxy is closing: asyncio's server must not see the cancellation
        finally:
            for w in (c_writer, t_writer):
                w.close()
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
