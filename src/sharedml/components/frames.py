"""What every data step shares: the data parties' session, their frames, an MPC runtime.

Each data party's frame lives in ``ctx.state`` (``"data"`` after alignment,
``"train"``/``"test"`` after a split) and never leaves its process. Helper
parties of a job (a dealer) hold no data: :func:`data_session` gives a step
the session over the parties with a dataset entry only, and
:func:`mpc_opener` an MPC runtime over them with the dealer's (or Paillier)
randomness for steps that compute on secret shares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sharedml.components.base import StepContext
from sharedml.errors import ConfigError
from sharedml.session import Session
from sharedml.transport.base import Channel
from sharedml.transport.codec import Value

if TYPE_CHECKING:
    from sharedml.mpc import MPC


class _PartiesOnly(Channel):
    """A view of a channel restricted to some of its peers (the data parties)."""

    def __init__(self, inner: Channel, peers: tuple[str, ...]) -> None:
        super().__init__(inner.party, peers, inner.job, inner.timeout)
        self._inner = inner

    def _send(self, to: str, tag: str, value: Value) -> None:
        self._inner._send(to, tag, value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        return self._inner._recv(frm, tag, timeout)


def data_session(
    ctx: StepContext, helpers: tuple[str, ...] = (), frac_bits: int | None = None
) -> Session:
    """The step's session over the data parties only (and the given ``helpers``)."""
    s = ctx.session
    peers = tuple(p for p in s.peers if p in ctx.parties or p in helpers)
    return Session(s.party, peers, _PartiesOnly(s.channel, peers),
                   frac_bits=s.frac_bits if frac_bits is None else frac_bits,
                   seed=s.seed, extras=s.extras)


def require_frame(ctx: StepContext, key: str) -> pd.DataFrame:
    frame = ctx.state.get(key)
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(
            f"no {key!r} data at this party for step {ctx.step_id!r}",
            party=ctx.party.name,
            step=ctx.step_id,
            remedy="run psi (and split) before this step",
        )
    return frame


def feature_columns(ctx: StepContext, frame: pd.DataFrame) -> list[str]:
    """Numeric columns other than ids and the label."""
    skip = set(ctx.party.id_columns) | ({ctx.party.label} if ctx.party.label else set())
    return [c for c in frame.columns
            if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]


def targets(ctx: StepContext, layout: str = "vertical") -> tuple[pd.DataFrame, list[str]]:
    """The frame to fit on and the state keys to transform.

    Horizontal data needs no alignment: if no earlier step left a frame, the
    party's dataset is loaded here (validated as ``psi`` does)."""
    if "train" in ctx.state:
        keys = [k for k in ("train", "test") if isinstance(ctx.state.get(k), pd.DataFrame)]
        return ctx.state["train"], keys
    if layout == "horizontal" and "data" not in ctx.state and ctx.party.dataset is not None:
        from sharedml.node.datasets import load_frame

        frame = load_frame(ctx.party.dataset, list(ctx.party.id_columns), ctx.party.label,
                           party=ctx.party.name)
        if frame.empty:  # no rows, no types: read the columns as numbers so the schema
            # check compares names and the fit reports the empty party by name
            skip = set(ctx.party.id_columns)
            frame = frame.astype({c: np.float64 for c in frame.columns if c not in skip})
        ctx.state["data"] = frame
    return require_frame(ctx, "data"), ["data"]


def mpc_opener(
    ctx: StepContext,
    provider: str | None,
    *,
    purpose: str = "this step computes on secret shares",
    otherwise: str = "",
) -> Callable[[], MPC]:
    """Opens the step's MPC runtime over the data parties, as ``train`` steps make theirs:
    randomness from the job's dealer (its first helper party), or Paillier-made; at
    :data:`~sharedml.learn.preprocessing.scaling.MINMAX_FRAC_BITS` fractional bits.

    Without a dealer (and no ``provider: he``) the error says ``purpose`` and
    offers ``otherwise`` as a last remedy."""
    helpers = tuple(p for p in ctx.session.peers if p not in ctx.parties)
    chosen = provider or ("dealer" if helpers else None)
    if chosen is None or (chosen == "dealer" and not helpers):
        raise ConfigError(
            f"{purpose} and needs a dealer, and this job has none",
            party=ctx.party.name,
            step=ctx.step_id,
            remedy="run it through 'sharedml run' or the platform (both add a dealer), set "
            "'provider: he' (two parties, slower)" + otherwise,
        )
    from sharedml.learn.preprocessing.scaling import MINMAX_FRAC_BITS
    from sharedml.mpc import MPC

    if chosen == "he":
        if len(ctx.parties) != 2:
            raise ConfigError(
                f"provider 'he' works between two parties, this job has {len(ctx.parties)}",
                party=ctx.party.name, step=ctx.step_id, remedy="use the dealer (the default)",
            )
        from sharedml.mpc.he import HEProvider

        he_session = data_session(ctx, frac_bits=MINMAX_FRAC_BITS)
        return lambda: MPC(he_session, HEProvider(he_session))
    from sharedml.mpc import DealerProvider

    dealer = helpers[0]
    session = data_session(ctx, (dealer,), frac_bits=MINMAX_FRAC_BITS)
    return lambda: MPC(session, DealerProvider(session, dealer=dealer))
