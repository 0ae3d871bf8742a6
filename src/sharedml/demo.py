"""``sharedml demo``: two parties, as separate processes, exchange a large array over mutual TLS.

Each party draws an array, sends it with its SHA-256 digest to the other
over a :class:`~sharedml.transport.grpc.GrpcChannel`, checks what it
received against the sender's digest, and confirms the check back to the
sender. :func:`exchange` is written against the Channel seam, so it runs
unchanged under :func:`sharedml.simulation.run_parties` (threads) and
:func:`sharedml.cluster.run_cluster` (processes). A later change turns the
demo into the credit-risk scenario.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import typer

from sharedml.errors import ProtocolAbort
from sharedml.session import Session

#: Bytes each party sends in the demo unless told otherwise.
DEFAULT_BYTES = 64 << 20


def exchange(session: Session) -> dict[str, Any]:
    """Send every peer an array and its digest; check and confirm what arrives.

    Steps: 1. draw ``extras["nbytes"]`` bytes of float64 from the session's
    (non-secret) generator; 2. send the array and its SHA-256 to each peer;
    3. receive each peer's array and digest, recompute and compare;
    4. tell each peer whether its array arrived intact, and hear the same back.

    Reveals: the arrays themselves (this is a transport check, not a protocol).
    """
    nbytes = int(session.extras.get("nbytes", DEFAULT_BYTES))
    mine = session.rng("demo").random(max(nbytes // 8, 1))
    digest = hashlib.sha256(mine.data).digest()
    channel = session.channel.scope("demo")
    start = time.perf_counter()
    for peer in session.others:
        channel.send(peer, "array", mine)
        channel.send(peer, "digest", digest)
    received: dict[str, dict[str, Any]] = {}
    for peer in session.others:
        theirs = channel.recv(peer, "array")
        claimed = channel.recv(peer, "digest")
        if not isinstance(theirs, np.ndarray) or not isinstance(claimed, bytes):
            raise ProtocolAbort(f"{peer!r} sent the wrong kinds of value", party=session.party)
        ok = hashlib.sha256(theirs.data).digest() == claimed
        channel.send(peer, "verdict", b"ok" if ok else b"corrupt")
        received[peer] = {"bytes": theirs.nbytes, "sha256": claimed.hex()[:16], "intact": ok}
    confirmed = {peer: channel.recv(peer, "verdict") == b"ok" for peer in session.others}
    seconds = time.perf_counter() - start
    return {
        "party": session.party,
        "sent_bytes": mine.nbytes * len(session.others),
        "sha256": digest.hex()[:16],
        "received": received,
        "confirmed_by_peers": confirmed,
        "seconds": seconds,
    }


def run_demo(
    nbytes: int = DEFAULT_BYTES, parties: tuple[str, ...] = ("bank", "shop")
) -> dict[str, Any]:
    """Run :func:`exchange` with each party in its own process over mutual TLS."""
    from sharedml.cluster import run_cluster

    return run_cluster(
        exchange, parties, job="demo", extras={p: {"nbytes": nbytes} for p in parties}
    )


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        megabytes: int = typer.Option(
            64, "--megabytes", "-m", min=1, max=4096, help="size of the array each party sends"
        ),
    ) -> None:
        """Two parties, each in its own process, exchange and check a large array over mutual TLS."""
        from rich.console import Console
        from rich.table import Table

        console = Console()
        console.print(
            "[bold]sharedml demo[/]: starting parties [cyan]bank[/] and [cyan]shop[/] as separate "
            "processes, with certificates from a fresh CA, talking gRPC over mutual TLS on loopback"
        )
        results = run_demo(megabytes << 20)
        table = Table(title="what each party did")
        for col in (
            "party",
            "sent",
            "sha256 sent",
            "received from",
            "sha256 received",
            "intact",
            "peer confirmed",
            "seconds",
        ):
            table.add_column(col)
        all_ok = True
        for party, res in results.items():
            for peer, got in res["received"].items():
                confirmed = res["confirmed_by_peers"][peer]
                all_ok &= got["intact"] and confirmed
                table.add_row(
                    party,
                    f"{res['sent_bytes'] / 2**20:.0f} MiB",
                    res["sha256"],
                    peer,
                    got["sha256"],
                    "yes" if got["intact"] else "[red]NO[/]",
                    "yes" if confirmed else "[red]NO[/]",
                    f"{res['seconds']:.2f}",
                )
        console.print(table)
        if not all_ok:
            console.print("[bold red]an array arrived corrupted[/]")
            raise typer.Exit(1)
        console.print("[bold green]both arrays arrived intact; both parties confirmed.[/]")
