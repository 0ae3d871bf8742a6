"""``sharedml shape``: put an emulated WAN link in front of any TCP server.

For an operator who wants to see how a deployment behaves when its parties
are far apart before they are: point one party's peer address (or a node's
``platform:``) at the proxy instead of the server. One
:class:`~sharedml.transport.shaping.ShapingProxy`, both directions shaped,
until Ctrl-C; TLS passes through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib

import typer

from sharedml.errors import ConfigError


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} {text!r} is not HOST:PORT", remedy="e.g. 127.0.0.1:7443")
    return host.strip("[]") or "127.0.0.1", int(port)


def register(app: typer.Typer) -> None:
    @app.command("shape")
    def shape(
        listen: str = typer.Argument(..., help="HOST:PORT to listen on (port 0: any free port)"),
        target: str = typer.Argument(..., help="HOST:PORT of the server behind the link"),
        rtt: float = typer.Option(20.0, "--rtt", min=0.0, help="round-trip time (ms)"),
        jitter: float = typer.Option(0.0, "--jitter", min=0.0, help="± jitter per segment (ms)"),
        bandwidth: float = typer.Option(
            None, "--bandwidth", help="Mbit/s each way (default: unlimited)"
        ),
        loss: float = typer.Option(0.0, "--loss", min=0.0, help="packet loss probability"),
        seed: int = typer.Option(0, "--seed", help="seed of the jitter and loss draws"),
    ) -> None:
        """Forward LISTEN to TARGET through an emulated WAN link (until Ctrl-C)."""
        import numpy as np

        from sharedml.transport.shaping import LinkProfile, Pipe, ShapingProxy

        profile = LinkProfile(rtt, jitter, bandwidth, loss, name="sharedml shape")
        host, port = _host_port(listen, "listen address")
        goal = _host_port(target, "target")
        rng = np.random.default_rng(seed)

        async def to_target() -> tuple[str, int]:
            return goal

        async def serve() -> None:
            proxy = ShapingProxy(to_target, Pipe(profile, rng), Pipe(profile, rng), host, port)
            await proxy.start()
            typer.echo(f"shaping {proxy.address} -> {target}: {profile}", err=True)
            typer.echo(proxy.address)
            await asyncio.Event().wait()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
