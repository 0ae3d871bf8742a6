"""Run SecureBoost with every party in a thread (the embedded mode)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sharedml.learn.tree import SecureBoostClassifier, SecureBoostRegressor
from sharedml.session import Session
from sharedml.standalone import run_in_threads
from sharedml.transport.base import Channel

GUEST, HOST = "guest", "host"


def parties_for(protocol: str) -> list[str]:
    return [GUEST, HOST, "dealer"] if protocol == "ss" else [GUEST, HOST]


def run_secureboost(
    cls: type[SecureBoostClassifier] | type[SecureBoostRegressor],
    Xg: np.ndarray,
    Xh: np.ndarray,
    y: np.ndarray | None,
    Xg_test: np.ndarray,
    Xh_test: np.ndarray,
    *,
    wrap: Callable[[Channel], Channel] | None = None,
    val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Fit and predict jointly; returns {party: (model, prediction)}."""
    protocol = params.setdefault("protocol", "he")

    def guest(s: Session) -> Any:
        m = cls(**params)
        if val is None:
            m.fit(s, Xg, y)
        else:
            m.fit(s, Xg, y, X_val=val[0], y_val=val[2])
        return m, m.predict(s, Xg_test)

    def host(s: Session) -> Any:
        m = cls(**params)
        m.fit(s, Xh, X_val=None if val is None else val[1])
        return m, m.predict(s, Xh_test)

    fns: dict[str, Callable[[Session], Any]] = {GUEST: guest, HOST: host}
    if protocol == "ss":
        from sharedml.mpc import serve_dealer

        fns["dealer"] = serve_dealer
    return run_in_threads(
        fns, parties_for(protocol), seed=b"secureboost-tests", wrap=wrap, timeout=600,
        dealer="dealer" if protocol == "ss" else None,
    )


def run_rows(
    cls: type[SecureBoostClassifier] | type[SecureBoostRegressor],
    data: Any,
    fit: np.ndarray,
    test: np.ndarray,
    **params: Any,
) -> dict[str, Any]:
    """:func:`run_secureboost` on rows ``fit`` and ``test`` of a split data set
    (``data.Xg``, ``data.Xh``, ``data.y``)."""
    return run_secureboost(
        cls, data.Xg[fit], data.Xh[fit], data.y[fit], data.Xg[test], data.Xh[test], **params
    )
