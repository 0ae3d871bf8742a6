"""An emulated WAN between a job's parties on one machine: one shaping proxy per directed link.

A :class:`ShapedNetwork` runs an asyncio event loop in a thread of the
process that makes it and places a :class:`~sharedml.transport.shaping.ShapingProxy`
on each directed pair of parties ``frm -> to``: ``frm``'s connections to
``to``'s server go through it. The link between two parties is one pair of
:class:`~sharedml.transport.shaping.Pipe` s, so what ``frm`` streams to
``to`` and the acknowledgements on ``to``'s own stream to ``frm`` share the
``frm -> to`` direction's bandwidth, as on a real full-duplex line.

Parties in this process: :meth:`ShapedNetwork.register` each party's server
address, then dial :meth:`ShapedNetwork.route`. Parties in
:func:`~sharedml.standalone.processes.run_in_processes`'s processes: pass
``wrap=network.joiner()``; in each party's process the join tells the
network (over a loopback control connection, one JSON line each way) where
the party's server listens, and points the party's
:class:`~sharedml.transport.grpc.GrpcChannel` at its proxies before the
first message. A proxy accepts connections before its target has joined and
waits for it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from sharedml.errors import ConfigError
from sharedml.transport.base import Channel
from sharedml.transport.shaping import LinkProfile, Pipe, ShapingProxy

T = TypeVar("T")
#: How long a proxy waits for its target party to join.
JOIN_WAIT_S = 120.0


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class ShapedNetwork:
    """Shaped links between named parties (see the module doc).

    Args:
        profile: every link's profile, unless ``links`` names one for a pair.
        links: ``{(a, b): profile}`` for the link between ``a`` and ``b``
            (both directions).
        seed: seeds the jitter and loss draws (emulation noise, not secrets).
    """

    def __init__(
        self,
        profile: LinkProfile,
        *,
        links: Mapping[tuple[str, str], LinkProfile] | None = None,
        seed: int = 0,
    ) -> None:
        self.profile = profile
        self._links = {frozenset(k): v for k, v in (links or {}).items()}
        self._rng = np.random.default_rng(seed)
        self._pipes: dict[tuple[str, str], Pipe] = {}
        self._proxies: dict[tuple[str, str], ShapingProxy] = {}
        self._targets: dict[str, asyncio.Future[tuple[str, int]]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="wan")
        self._control: asyncio.Server | None = None

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> ShapedNetwork:
        self._thread.start()
        self._control = self._run(asyncio.start_server(self._serve_join, "127.0.0.1", 0))
        return self

    def close(self) -> None:
        """Stop every proxy and drop the connections they carry."""

        async def stop() -> None:
            if self._control is not None:
                self._control.close()
            for proxy in self._proxies.values():
                await proxy.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        if self._thread.is_alive():
            self._run(stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    def __enter__(self) -> ShapedNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    # -- parties and links --------------------------------------------------------------
    def register(self, party: str, address: str) -> None:
        """``party``'s server listens at ``address`` (proxies to it start forwarding)."""
        self._loop.call_soon_threadsafe(self._set_target, party, _split(address))

    def route(self, frm: str, to: str) -> str:
        """The address ``frm`` dials to reach ``to`` through their link."""
        return self._run(self._route(frm, to))

    def stats(self) -> dict[str, dict[str, int]]:
        """Bytes, segments and lost packets per direction (``"a->b"``), as carried so far."""
        return {
            f"{a}->{b}": vars(pipe.stats).copy() for (a, b), pipe in sorted(self._pipes.items())
        }

    def joiner(
        self, then: Callable[[Channel], Channel] | None = None, timeout: float = 60.0
    ) -> JoinNetwork:
        """A picklable channel wrap that joins a party's process to this network,
        then wraps its channel in ``then`` (a picklable wrap, if given)."""
        if self._control is None:
            raise ConfigError("start the network before handing out its joiner")
        return JoinNetwork(self._control.sockets[0].getsockname()[1], then, timeout)

    # -- on the loop ------------------------------------------------------------------------
    def _future(self, party: str) -> asyncio.Future[tuple[str, int]]:
        if party not in self._targets:
            self._targets[party] = self._loop.create_future()
        return self._targets[party]

    def _set_target(self, party: str, address: tuple[str, int]) -> None:
        future = self._future(party)
        if future.done():
            self._targets[party] = future = self._loop.create_future()
        future.set_result(address)

    def _pipe(self, frm: str, to: str) -> Pipe:
        if (frm, to) not in self._pipes:
            profile = self._links.get(frozenset((frm, to)), self.profile)
            self._pipes[(frm, to)] = Pipe(profile, self._rng)
        return self._pipes[(frm, to)]

    async def _route(self, frm: str, to: str) -> str:
        proxy = self._proxies.get((frm, to))
        if proxy is None:

            async def target() -> tuple[str, int]:  # the latest address ``to`` registered
                return await asyncio.wait_for(asyncio.shield(self._future(to)), JOIN_WAIT_S)

            proxy = ShapingProxy(target, self._pipe(frm, to), self._pipe(to, frm))
            self._proxies[(frm, to)] = proxy
            await proxy.start()
        return proxy.address

    async def _serve_join(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            party, peers = str(request["party"]), [str(p) for p in request["peers"]]
            self._set_target(party, _split(str(request["address"])))
            routes = {p: await self._route(party, p) for p in peers if p != party}
            writer.write(json.dumps({"routes": routes}).encode() + b"\n")
            await writer.drain()
        except (ValueError, KeyError, TypeError, OSError):
            pass
        finally:
            writer.close()


def _grpc_channel(channel: Channel) -> Any:
    """The :class:`~sharedml.transport.grpc.GrpcChannel` beneath ``channel``'s wrappers."""
    from sharedml.transport.grpc import GrpcChannel

    seen = channel
    while not isinstance(seen, GrpcChannel):
        inner = getattr(seen, "inner", None) or getattr(seen, "_inner", None)
        if not isinstance(inner, Channel):
            raise ConfigError("a shaped network joins gRPC channels only", party=channel.party)
        seen = inner
    return seen


@dataclass(frozen=True)
class JoinNetwork:
    """Channel wrap (picklable): tell the network where this party listens, dial its proxies."""

    control_port: int
    then: Callable[[Channel], Channel] | None = None
    timeout: float = 60.0

    def __call__(self, channel: Channel) -> Channel:
        grpc_channel = _grpc_channel(channel)
        request = {
            "party": channel.party,
            "address": grpc_channel.endpoint.address,
            "peers": list(channel.peers),
        }
        with socket.create_connection(("127.0.0.1", self.control_port), self.timeout) as sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            reply = sock.makefile("rb").readline()
        try:
            routes = json.loads(reply)["routes"]
        except (ValueError, KeyError) as exc:
            raise ConfigError(
                f"the shaped network refused party {channel.party!r}", party=channel.party
            ) from exc
        grpc_channel.addresses.update(routes)
        return channel if self.then is None else self.then(channel)

