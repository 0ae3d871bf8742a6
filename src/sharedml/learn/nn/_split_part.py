"""A split MLP party's learned state: snapshots for early stopping, what it
keeps after training, and its model file (its own bottom net; ``L``'s top
net and its own interactive block and bias; its shares of the feature
holders' interactive blocks — never another party's net)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sharedml.errors import ConfigError, ProtocolAbort
from sharedml.learn.nn._core import Dense
from sharedml.learn.nn._params import (
    arrays_from_json,
    arrays_to_json,
    shares_from_json,
    shares_to_json,
)
from sharedml.session import Session


def _layers(flat: list[np.ndarray]) -> list[list[np.ndarray]]:
    return [[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)]


class SplitPart:
    """State handling of :class:`sharedml.learn.nn.split._SplitMLP`."""

    activation: str
    party_: str
    _bottom: Any  # Dense, or TorchDense with bottom_backend: torch
    _top: Dense | None
    _W: list[Any]
    _own: list[np.ndarray] | None
    _mpc: Any

    def _snapshot(self) -> Any:
        top = None if self._top is None else [p.copy() for p in self._top.params]
        own = None if self._own is None else [p.copy() for p in self._own]
        shares = [W.share.copy() for W in self._W]
        return [p.copy() for p in self._bottom.params], top, own, shares

    def _restore(self, snap: Any) -> None:
        from sharedml.mpc import SharedTensor

        bottom, top, own, shares = snap
        for p, saved in zip(self._bottom.params, bottom, strict=True):
            p[...] = saved
        if self._top is not None and top is not None:
            for p, saved in zip(self._top.params, top, strict=True):
                p[...] = saved
        if self._own is not None and own is not None:
            for p, saved in zip(self._own, own, strict=True):
                p[...] = saved
        f = self._mpc.frac_bits
        self._W = [SharedTensor(self._mpc, s, f) for s in shares]

    def _finish(self, session: Session) -> None:
        self.bottom_: Any = self._bottom
        self.top_: Dense | None = self._top
        self.own_: list[np.ndarray] | None = self._own
        self.w_shares_: list[np.ndarray] | None = [W.share.copy() for W in self._W]
        self.frac_bits_ = int(session.frac_bits)

    def _shared_weights(self, mpc: Any) -> list[Any]:
        """This party's shares of the feature holders' blocks in the runtime ``mpc``."""
        from sharedml.mpc import SharedTensor

        if self.w_shares_ is None:
            raise ProtocolAbort("interactive-layer shares missing", party=self.party_)
        return [SharedTensor(mpc, s, self.frac_bits_) for s in self.w_shares_]

    def _part(self) -> dict[str, Any]:
        top = getattr(self, "top_", None)
        common: dict[str, Any] = self._common_part()  # type: ignore[attr-defined]
        return {
            **common,
            "bottom": arrays_to_json(self.bottom_.params),
            "top": None if top is None else arrays_to_json(top.params),
            "interactive_own": arrays_to_json(getattr(self, "own_", None)),
            "weight_shares": shares_to_json(self.w_shares_),
            "frac_bits": self.frac_bits_,
            "label_dp_epsilon": getattr(self, "label_dp_epsilon_", None),
        }

    def _set_part(self, part: dict[str, Any]) -> None:
        self._set_common_part(part)  # type: ignore[attr-defined]
        self.bottom_ = Dense(_layers(arrays_from_json(part["bottom"]) or []), self.activation)
        top = arrays_from_json(part.get("top"))
        self.top_ = None if top is None else Dense(_layers(top), self.activation, linear_out=True)
        if "interactive_own" not in part:
            raise ConfigError(
                "this split MLP part predates the label holder's plaintext interactive block",
                step="load",
                remedy="train the model again with this sharedml version",
            )
        self.own_ = arrays_from_json(part["interactive_own"])
        self.w_shares_ = shares_from_json(part["weight_shares"])
        self.frac_bits_ = int(part["frac_bits"])
        self.label_dp_epsilon_ = part.get("label_dp_epsilon")
