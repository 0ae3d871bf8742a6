"""Public figures from the aggregator to the clients: metrics, the DP account, or why it failed.

After a horizontal protocol the aggregator tells every client how it went:
either named numbers (pooled metrics, ε, rounds run) or the reason it
stopped, which the client raises as :class:`~sharedml.errors.ProtocolAbort`
so a failed aggregation never looks like a trained model. Two messages on
``tag``: the names (UTF-8, one per line; or ``!`` and the reason) and the
values (float64).

Reveals: the figures themselves (public by design of the step that sends
them) or the failure reason; nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sharedml.errors import ChannelError, DataError, ProtocolAbort
from sharedml.session import Session

_FAILED = "!"


def send_figures(session: Session, clients: Iterable[str], tag: str,
                 figures: dict[str, float] | None = None, failure: str = "") -> None:
    """Send every reachable client ``figures``, or ``failure`` when ``figures`` is ``None``."""
    names = sorted(figures or {})
    head = "\n".join(names) if figures is not None else f"{_FAILED}{failure}"
    values = np.array([float((figures or {})[n]) for n in names], dtype=np.float64)
    for c in clients:
        try:
            session.channel.send(c, tag, head.encode())
            session.channel.send(c, tag, values)
        except ChannelError:  # gone: it has nothing to be told
            continue


def receive_figures(session: Session, server: str, tag: str) -> dict[str, float]:
    """The figures the aggregator sent; :class:`ProtocolAbort` with its reason if it failed."""
    head = session.channel.recv(server, tag)
    values = session.channel.recv(server, tag)
    if not isinstance(head, bytes) or not isinstance(values, np.ndarray):
        raise DataError("malformed figures from the aggregator", party=session.party)
    text = head.decode("utf-8", errors="replace")
    if text.startswith(_FAILED):
        raise ProtocolAbort(f"the aggregator {server!r} stopped: {text[1:]}", party=session.party)
    names = text.split("\n") if text else []
    if len(names) != values.size:
        raise DataError("malformed figures from the aggregator", party=session.party)
    return {n: float(v) for n, v in zip(names, values, strict=True)}
