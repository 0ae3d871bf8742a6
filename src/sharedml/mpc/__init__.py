"""Secret sharing on Z_2^64: the MPC engine (docs/architecture.md §2-3, standard §7, 9.4-8).

Parties hold additive shares of fixed-point tensors and exchange only masked
values; correlated randomness comes from a :class:`RandomnessProvider`.

Usage (two providers and a dealer, as threads;
:func:`sharedml.standalone.run_in_processes` runs the same functions as
processes over gRPC with mTLS)::

    import numpy as np
    from sharedml.mpc import MPC, DealerProvider, serve_dealer
    from sharedml.standalone import run_in_threads

    def provider(session):
        with session.mpc_runtime().open() as mpc:    # randomness from the session's dealer
            mine = np.array([[1.5, -2.0]]) if session.party == "alice" else None
            x = mpc.share(mine, owner="alice")       # alice passes her array,
            w = mpc.share(np.array([[0.5], [0.25]]) if session.party == "bob" else None,
                          owner="bob")               # ... the others pass None
            y = x @ w                                # Beaver matmul + truncation
            z = (y * 2.0 - 1).sigmoid()              # public ops, nonlinear functions
            return z.reveal(to="alice")              # only alice learns; others get None

    out = run_in_threads(
        {"alice": provider, "bob": provider, "dealer": serve_dealer},
        ["alice", "bob", "dealer"],
        dealer="dealer",
    )

Every party runs the same sequence of operations (lock step). The dealer
stops when the runtimes close (``with`` or :meth:`MPC.close`). For a matrix
used in many products (training data), wrap it once:
``fx = FixedOperand(x)``; then ``fx.matmul(w, rows=batch)`` and
``fx.matmul(g, rows=batch, transpose=True)`` open only ``w``'s and ``g``'s
masks (and truncate, unless ``truncate=False``).

Comparisons, ``relu``, ``select``, ``max``/``argmax`` and ``eq`` live in
:mod:`sharedml.mpc.functions`; sigmoid, exp, log, reciprocal, sqrt/rsqrt and
division, with their error bounds, in :mod:`sharedml.mpc.nonlinear`; the
inverse of a small SPD matrix (VIF) in :mod:`sharedml.mpc.linalg`.

:meth:`Session.mpc_runtime <sharedml.session.Session.mpc_runtime>` is the one
place that chooses the randomness: it opens ``MPC(session, DealerProvider(session))``
over the data parties when the session has a dealer, or, with
``mpc_runtime("he")`` and no third party, ``MPC(session, HEProvider(session))``
between two parties (material made with Paillier; the dealer function is not
run). Build ``MPC`` with a provider directly only to test a provider.
"""

from __future__ import annotations

from sharedml.mpc import functions, linalg, nonlinear
from sharedml.mpc.beaver import FixedOperand
from sharedml.mpc.context import MPC
from sharedml.mpc.dealer import DealerProvider, serve_dealer
from sharedml.mpc.he import HEProvider
from sharedml.mpc.provider import RandomnessProvider
from sharedml.mpc.tensor import SharedTensor, concatenate, stack
from sharedml.mpc.truncation import rescale, truncate

__all__ = [
    "MPC",
    "DealerProvider",
    "FixedOperand",
    "HEProvider",
    "RandomnessProvider",
    "SharedTensor",
    "concatenate",
    "functions",
    "linalg",
    "nonlinear",
    "rescale",
    "serve_dealer",
    "stack",
    "truncate",
]
