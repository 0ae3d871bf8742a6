"""Beaver products: element-wise, matrix, and matrix with a fixed operand.

Protocol ``mul`` (x, y shared; triple a, b, c = a·b from the provider):

1. Each party P_i computes d_i = x_i - a_i and e_i = y_i - b_i.
2. The parties open d = x - a and e = y - b (one message per peer; one round).
3. P_i sets z_i = c_i + d·b_i + e·a_i, and P_0 adds d·e. Then Σ z_i = x·y.

``matmul`` is the same with matrix products (z_i = c_i + d@b_i + x_i@e, two
ring products per party, exact via :func:`sharedml.crypto.ring.matmul`).

:class:`FixedOperand` masks a matrix X that is used in many products (the
data matrix across training epochs) once: X - A is opened a single time, and
each later product X[rows] @ Y (or X[rows]ᵀ @ Y) opens only Y - B; the dealer
computes A[rows] @ B from the A it remembers.

Reveals: d and e (and X - A) are uniformly distributed because a, b (A) are
uniform and unknown to every party; nothing about x, y or X is revealed. The
product stays shared (with 2·frac_bits for reals; the caller truncates).

Security model: semi-honest; as strong as the provider (dealer must not
collude with a party; HE: two parties, none may be malicious). Reusing A is
safe because X is fixed: every opened F = Y - B uses fresh B, and X - A is
opened once.

Reference: D. Beaver, "Efficient multiparty protocols using circuit
randomization", CRYPTO 1991; Mohassel & Zhang, "SecureML", IEEE S&P 2017, §4.2
(matrix triples and reusing the mask of a fixed data matrix).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sharedml.crypto import ring
from sharedml.errors import DataError
from sharedml.mpc.material import Kind, segment_columns
from sharedml.mpc.provider import Material
from sharedml.mpc.tensor import SharedTensor


def _fail(x: SharedTensor, op: str, message: str) -> DataError:
    return DataError(f"{op}: {message}", party=x.mpc.party, step=op)


def mul(x: SharedTensor, y: SharedTensor, material: Material | None = None) -> SharedTensor:
    """Shared x·y, untruncated (scale = x.scale + y.scale). One round.

    ``material`` is a MUL triple of the broadcast shape requested earlier
    (e.g. dealt ahead of time, the offline phase); by default one is requested.
    """
    mpc = x.mpc
    if y.mpc is not mpc:
        raise _fail(x, "mul", "operands belong to different MPC runtimes")
    try:
        shape = np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise _fail(x, "mul", f"shapes {x.shape} and {y.shape} do not broadcast") from None
    mat = material if material is not None else mpc.provider.request(Kind.MUL, shape)
    a, b = mat["a"], mat["b"]
    # x - a and y - b straight into the one message that opens them
    size = int(np.prod(shape))
    masked = np.empty(2 * size, dtype=ring.DTYPE)
    np.subtract(x.share, a, out=masked[:size].reshape(shape))
    np.subtract(y.share, b, out=masked[size:].reshape(shape))
    opened = mpc.open("mul", masked)
    d, e = opened[:size].reshape(shape), opened[size:].reshape(shape)
    # z = c + d·b + e·a (+ d·e at P_0, folded in as d·(b + e))
    if mpc.index == 0:
        z = np.add(b, e)
        z *= d
    else:
        z = np.multiply(d, b)
    z += mat["c"]
    np.multiply(e, a, out=d)  # d is not needed any more (opened is ours)
    z += d
    mat.release()
    return SharedTensor(mpc, z, x.scale + y.scale)


def _as_matrix(t: SharedTensor, op: str, side: str) -> np.ndarray:
    if t.ndim == 2:
        return t.share
    if t.ndim == 1:
        return t.share.reshape((1, -1) if side == "left" else (-1, 1))
    raise _fail(t, op, f"operands must be 1-D or 2-D, got shape {t.shape}")


def _result_shape(x_shape: tuple[int, ...], y_shape: tuple[int, ...], out: tuple[int, int]) -> tuple[int, ...]:
    if len(x_shape) == 1 and len(y_shape) == 1:
        return ()
    if len(x_shape) == 1:
        return (out[1],)
    if len(y_shape) == 1:
        return (out[0],)
    return out


def matmul_shape(x: SharedTensor, y: SharedTensor) -> tuple[int, ...]:
    """The shape of ``x @ y``; a clear error when the operands do not fit."""
    xm, ym = _as_matrix(x, "matmul", "left"), _as_matrix(y, "matmul", "right")
    if xm.shape[1] != ym.shape[0]:
        raise _fail(x, "matmul", f"inner dimensions differ: {x.shape} @ {y.shape}")
    return _result_shape(x.shape, y.shape, (xm.shape[0], ym.shape[1]))


def matmul(x: SharedTensor, y: SharedTensor, material: Material | None = None) -> SharedTensor:
    """Shared x @ y for 1-D/2-D operands, untruncated. One round.

    ``material`` is a MATMUL triple for (m, k, n) requested earlier; by
    default one is requested.
    """
    mpc = x.mpc
    xm, ym = _as_matrix(x, "matmul", "left"), _as_matrix(y, "matmul", "right")
    if xm.shape[1] != ym.shape[0]:
        raise _fail(x, "matmul", f"inner dimensions differ: {x.shape} @ {y.shape}")
    m, k = xm.shape
    n = ym.shape[1]
    mat = material if material is not None else mpc.provider.request(Kind.MATMUL, (m, k, n))
    d, e = mpc.open_many("matmul", [xm - mat["a"], ym - mat["b"]])
    z = ring.matmul(d, mat["b"])
    z += ring.matmul(xm, e)
    z += mat["c"]
    mat.release()
    return SharedTensor(mpc, z.reshape(_result_shape(x.shape, y.shape, (m, n))), x.scale + y.scale)


def matmul_public(x: SharedTensor, p: np.ndarray, *, left: bool) -> SharedTensor:
    """``p @ x`` (``left``) or ``x @ p`` with a public ``p``; local, untruncated."""
    mpc = x.mpc
    if p.dtype.kind in "iub":
        enc, scale = ring.as_ring(p), 0
    else:
        enc, scale = mpc.fp.encode(p, what="public matrix"), mpc.frac_bits
    a, b = (enc, x.share) if left else (x.share, enc)
    try:
        if a.ndim > 2 or b.ndim > 2:
            raise ValueError("operands must be 1-D or 2-D")
        am = a.reshape(1, -1) if a.ndim == 1 else a
        bm = b.reshape(-1, 1) if b.ndim == 1 else b
        z = ring.matmul(am, bm)
    except ValueError as exc:
        raise _fail(x, "matmul", str(exc)) from None
    shape = _result_shape(a.shape, b.shape, (am.shape[0], bm.shape[1]))
    return SharedTensor(mpc, z.reshape(shape), x.scale + scale)


class FixedOperand:
    """A shared matrix X masked once for many products ``X[rows] @ Y``.

    1. (once) The provider deals a mask A of X's shape; the parties open
       E = X - A (one round). Each keeps E and its own share of X.
    2. (per product) For rows R and a fresh B (with C = A[R] @ B, or
       A[R]ᵀ @ B when ``transpose``), open F = Y - B (one round) and set
       z_i = C_i + E[R] @ B_i + X_i[R] @ F. Σ z_i = X[R] @ Y.

    Reveals: E once (uniform, as A is uniform and used for nothing else) and
    each F (uniform, fresh B). See the module docstring for the model.

    Tip (training loops): ``fx.matmul(g, rows=b, transpose=True, truncate=False)
    * (lr / len(b))`` truncates once for both the product and the step size
    (scale 3f → f), saving a round per batch.

    :meth:`truncated_matmul_t` folds a truncation into the product that
    follows it: X[R]ᵀ @ (⌊v / 2^k⌋ + offset) costs the truncation's opening
    only (TRUNC_FIXED material: the pair r, r_hi, r_msb of the truncation plus
    C = A[R]ᵀ r_hi and M = A[R]ᵀ diag(r_msb); see that method).
    """

    def __init__(self, x: SharedTensor) -> None:
        if x.ndim != 2:
            raise _fail(x, "fixed_operand", f"needs a 2-D matrix, got shape {x.shape}")
        self.mpc = x.mpc
        self.x = x
        mat = self.mpc.provider.request(Kind.FIXED_MASK, x.shape)
        self.id = mat.counter
        self.e = self.mpc.open("fixed_operand", x.share - mat["a"])
        mat.release()
        self._limbs = ring.split(self.e)
        self._x_limbs = ring.split(x.share)
        # the last row selection (a training batch uses the same rows twice)
        self._cached: tuple[np.ndarray, ring.Limbs, ring.Limbs] | None = None
        #: set by :meth:`offload`: where this party's part of a product is computed
        self._products: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    def offload(self, products: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        """Have ``products(b, f)`` compute this party's local part ``Eᵀ b_i + X_iᵀ f``
        (mod 2^64) of every product over all rows with ``transpose`` — for instance over
        row shards on the party's own Ray workers
        (:meth:`sharedml.scale.runtime.RayCompute.fixed_products`). It must be that
        ring value bit for bit; nothing else changes (the same openings, the same
        material)."""
        self._products = products

    @property
    def shape(self) -> tuple[int, ...]:
        return self.x.shape

    def _index(self, rows: np.ndarray | slice | None) -> np.ndarray | None:
        if isinstance(rows, slice):
            return np.arange(self.shape[0])[rows]
        if rows is None:
            return None
        idx = np.asarray(rows, dtype=np.int64)
        if idx.ndim != 1 or (idx.size and (idx.min() < -self.shape[0] or idx.max() >= self.shape[0])):
            raise _fail(self.x, "fixed_matmul", f"rows out of range for shape {self.shape}")
        return idx % self.shape[0]

    def truncated_matmul_t(
        self,
        v: SharedTensor,
        bits: int,
        *,
        rows: np.ndarray | slice | None = None,
        offset: float = 0.0,
        segments: Sequence[int] | None = None,
    ) -> SharedTensor:
        """Shared ``X[rows]ᵀ @ (⌊v / 2^bits⌋ + offset)`` for a column ``v``
        (scale ``v.scale - bits`` after the truncation, plus X's); untruncated
        product. One round — the truncation's — with a provider that deals
        TRUNC_FIXED material, else a truncation then :meth:`matmul` (two).

        With ``segments`` (sizes summing to the rows), one product per
        consecutive segment of rows, as the columns of a ``(k, len(segments))``
        result — several mini-batches' gradients from one opening.

        1. Open c = v + 2^62 + r as in pair truncation
           (:mod:`sharedml.mpc.truncation`); with u = 1 - msb(c) (public),
           P_i's share of t = ⌊v/2^k⌋ is [i=0]·q + y_i, q = ⌊c/2^k⌋ - 2^(62-k)
           (+ the offset) public and y_i = -r_hi_i + 2^(64-k)·u·r_msb_i.
        2. For each segment S, X[S]ᵀ t[S] = Σ_i X_i[S]ᵀ q[S] + E[S]ᵀ Σ_i y_i[S]
           + A[S]ᵀ Σ_i y_i[S], and A[S]ᵀ Σ y_i = -C_S + 2^(64-k)·M[:, S] u[S]:
           P_i sets z_i = X_i[S]ᵀ q[S] + E[S]ᵀ y_i[S] - C_S,i + 2^(64-k)·M_i[:, S] u[S]
           (local; C has one column per segment).

        Reveals: c only (uniform, as in pair truncation); no F = t - B is
        opened. Same error as :func:`~sharedml.mpc.truncation.truncate`
        (+0 or +1 ulp on t, for |v| < 2^62). Semi-honest, as the provider.
        """
        from sharedml.mpc.truncation import truncate

        mpc = self.mpc
        idx = self._index(rows)
        m = self.shape[0] if idx is None else idx.size
        if v.shape not in ((m,), (m, 1)):
            raise _fail(v, "fixed_matmul", f"needs a column of {m} rows, got shape {v.shape}")
        parts = _segments(v, m, segments)
        scale = v.scale - bits
        provider = mpc.provider
        if not provider.supports_trunc_fixed or mpc.trunc_mode != "pair" or not 0 < bits < 62:
            t = truncate(v, bits)
            t.scale = scale
            return self.matmul(_blocks(t + offset, parts), rows=idx, transpose=True, truncate=False)
        dims = (self.id, bits, m) if len(parts) == 1 else (self.id, bits, m, *parts)
        mat = provider.request(Kind.TRUNC_FIXED, dims, idx)
        masked = v.share.reshape(m, 1) + mat["r"]
        if mpc.index == 0:
            masked += np.uint64(1 << 62)
        c = mpc.open("trunc_fixed", masked)
        kb = np.uint64(bits)
        u = (c >> np.uint64(63)) ^ np.uint64(1)
        q = (c >> kb) - np.uint64(1 << (62 - bits))
        if offset:
            q += np.int64(round(offset * float(1 << scale))).astype(np.uint64)
        y = (u << np.uint64(64 - bits)) * mat["r_msb"]
        y -= mat["r_hi"]
        e, xs = self._limbs, self._x_limbs
        if idx is not None:
            e, xs = self._rows(idx)
        z = ring.matmul(xs.T, ring.split(segment_columns(q, parts)))
        z += ring.matmul(e.T, ring.split(segment_columns(y, parts)))
        z -= mat["c"]
        picked = mat["M"] * u.reshape(1, -1)  # columns of rows whose u is 1
        z += _segment_sums(picked, parts) << np.uint64(64 - bits)
        mat.release()
        out = z if len(parts) > 1 else z.reshape(-1, 1)
        return SharedTensor(mpc, out, self.x.scale + scale)

    def _rows(self, idx: np.ndarray) -> tuple[ring.Limbs, ring.Limbs]:
        cached = self._cached
        if cached is not None and cached[0].shape == idx.shape and np.array_equal(cached[0], idx):
            return cached[1], cached[2]
        e, xs = self._limbs.rows(idx), self._x_limbs.rows(idx)
        self._cached = (idx.copy(), e, xs)
        return e, xs

    def matmul(
        self,
        y: SharedTensor,
        *,
        rows: np.ndarray | slice | None = None,
        transpose: bool = False,
        truncate: bool = True,
    ) -> SharedTensor:
        """Shared ``X[rows] @ y`` (or ``X[rows]ᵀ @ y``); one round, plus the
        truncation round unless ``truncate=False``."""
        mpc = self.mpc
        idx = self._index(rows)
        e, xs = self._limbs, self._x_limbs
        if idx is not None:
            e, xs = self._rows(idx)
        if transpose:
            e, xs = e.T, xs.T
        ym = _as_matrix(y, "fixed_matmul", "right")
        if ym.shape[0] != e.shape[1]:
            what = "Xᵀ" if transpose else "X"
            raise _fail(y, "fixed_matmul", f"inner dimensions differ: {what} {e.shape} @ {y.shape}")
        n = ym.shape[1]
        shape = (e.shape[0],) if y.ndim == 1 else (e.shape[0], n)
        from sharedml.mpc.truncation import prefetch, rescale

        pair = prefetch(mpc, shape, self.x.scale + y.scale) if truncate else None
        mat = mpc.provider.request(Kind.FIXED_MATMUL, (self.id, int(transpose), n), idx)
        b = mat["b"]
        (f,) = mpc.open_many("fixed_matmul", [ym - b])
        if self._products is not None and transpose and idx is None:
            z = self._products(b, f)
        else:
            z = ring.matmul(e, ring.split(b))
            z += ring.matmul(xs, ring.split(f))
        z += mat["c"]
        mat.release()
        out = SharedTensor(mpc, z.reshape(shape), self.x.scale + y.scale)
        return rescale(out, pair) if truncate else out


def _segments(v: SharedTensor, m: int, segments: Sequence[int] | None) -> list[int]:
    parts = [m] if segments is None else [int(s) for s in segments]
    if sum(parts) != m or min(parts) < 1:
        raise _fail(v, "fixed_matmul", f"segments {parts} do not split {m} rows")
    return parts


def _segment_sums(matrix: np.ndarray, parts: list[int]) -> np.ndarray:
    """Sums of ``matrix``'s columns over each segment: (k, len(parts))."""
    bounds = np.cumsum([0, *parts[:-1]])
    return np.add.reduceat(matrix, bounds, axis=1, dtype=np.uint64)


def _blocks(t: SharedTensor, parts: list[int]) -> SharedTensor:
    return SharedTensor(t.mpc, segment_columns(t.share.reshape(-1, 1), parts), t.scale)
