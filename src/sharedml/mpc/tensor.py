"""SharedTensor: a fixed-point tensor additively shared over Z_2^64.

Each computing party holds a ``uint64`` array ``share``; the secret is
``Σ shares (mod 2^64)`` read as a two's-complement integer scaled by
``2^-scale``. ``scale`` is the fixed-point precision (``frac_bits``) for reals
and 0 for integers such as comparison bits, so a bit times a real needs no
truncation. Products of two reals carry ``2·frac_bits`` until
:func:`~sharedml.mpc.truncation.truncate` brings them back.

Local operations (no messages): ``+ - neg``, products with public integers,
sum/mean (mean truncates once), reshape, transpose, indexing, concatenate.
Interactive ones: ``*`` and ``@`` between shared tensors
(:mod:`sharedml.mpc.beaver`), products with public reals (truncation),
comparisons and nonlinear functions (:mod:`sharedml.mpc.functions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sharedml.crypto import ring
from sharedml.errors import ConfigError, DataError

if TYPE_CHECKING:
    from sharedml.mpc.context import MPC


def _is_int_public(value: object) -> bool:
    if isinstance(value, bool | int | np.integer):
        return True
    return isinstance(value, np.ndarray) and value.dtype.kind in "iub"


class SharedTensor:
    """This party's share of a secret tensor (see module docstring)."""

    __slots__ = ("mpc", "scale", "share")
    __array_priority__ = 1000  # numpy defers to our reflected operators

    def __init__(self, mpc: MPC, share: np.ndarray, scale: int) -> None:
        self.mpc = mpc
        self.share = np.asarray(share, dtype=ring.DTYPE)
        self.scale = scale

    # -- introspection ---------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.share.shape

    @property
    def ndim(self) -> int:
        return self.share.ndim

    @property
    def size(self) -> int:
        return self.share.size

    def __len__(self) -> int:
        return len(self.share)

    def __repr__(self) -> str:
        return f"SharedTensor(shape={self.shape}, scale={self.scale}, party={self.mpc.party!r})"

    def _new(self, share: np.ndarray, scale: int | None = None) -> SharedTensor:
        return SharedTensor(self.mpc, share, self.scale if scale is None else scale)

    def _fail(self, op: str, message: str) -> DataError:
        return DataError(f"{op}: {message}", party=self.mpc.party, step=op)

    # -- leaving the shared world ------------------------------------------------------
    def reveal(self, to: str | None = None, *, raw: bool = False) -> np.ndarray | None:
        """Open the secret to party ``to`` (or to every party when ``None``).

        1. Every party but ``to`` sends its share to ``to`` (to every other
           party when ``to`` is ``None``; one round).
        2. The receiver sums the shares.

        Reveals: the value, to ``to`` only; the others learn nothing.
        Semi-honest (a party that lies about its share changes the result).
        Returns floats (ring elements if ``raw``) at the receivers and ``None``
        elsewhere.
        """
        mpc = self.mpc
        if to is not None and to not in mpc.parties:
            raise ConfigError(f"reveal: {to!r} is not a computing party {mpc.parties}")
        got = mpc.exchange("reveal", self.share, None if to is None else (to,))
        if to is not None and mpc.party != to:
            return None
        total = self.share.copy()
        for p in mpc.others:
            total += got[p]
        if raw:
            return total
        return ring.to_signed(total).astype(np.float64) / float(1 << self.scale)

    # -- alignment -----------------------------------------------------------------------
    def _lift(self, scale: int) -> SharedTensor:
        if scale == self.scale:
            return self
        return self._new(self.share << np.uint64(scale - self.scale), scale)

    def _public(self, value: object, scale: int) -> np.ndarray:
        if _is_int_public(value):
            return ring.as_ring(np.asarray(value)) << np.uint64(scale)
        arr = np.asarray(value, dtype=np.float64)
        scaled = np.rint(arr * float(1 << scale))
        if not np.all(np.isfinite(scaled)) or (
            scaled.size and np.abs(scaled).max() >= 2.0**63
        ):
            raise self._fail(
                "public", f"public operand is not finite or exceeds ±2^{63 - scale}"
            )
        return scaled.astype(np.int64).view(ring.DTYPE)

    def _check_broadcast(self, op: str, other_shape: tuple[int, ...]) -> None:
        try:
            np.broadcast_shapes(self.shape, other_shape)
        except ValueError:
            raise self._fail(
                op, f"shapes {self.shape} and {other_shape} do not broadcast"
            ) from None

    def _add(self, other: object, sign: int, op: str) -> SharedTensor:
        if isinstance(other, SharedTensor):
            if other.mpc is not self.mpc:
                raise self._fail(op, "operands belong to different MPC runtimes")
            self._check_broadcast(op, other.shape)
            scale = max(self.scale, other.scale)
            a, b = self._lift(scale).share, other._lift(scale).share
            return self._new(a + b if sign > 0 else a - b, scale)
        pub = np.asarray(other)
        self._check_broadcast(op, pub.shape)
        # integers keep the tensor's scale; reals lift an integer tensor to frac_bits
        scale = self.scale if _is_int_public(other) else max(self.scale, self.mpc.frac_bits)
        me = self._lift(scale)
        enc = self._public(other, scale)
        if self.mpc.index != 0:
            return self._new(np.broadcast_to(me.share, np.broadcast_shapes(me.shape, enc.shape)).copy(), scale)
        return self._new(me.share + enc if sign > 0 else me.share - enc, scale)

    # -- linear operations -------------------------------------------------------------
    def __add__(self, other: object) -> SharedTensor:
        return self._add(other, 1, "add")

    __radd__ = __add__

    def __sub__(self, other: object) -> SharedTensor:
        return self._add(other, -1, "sub")

    def __rsub__(self, other: object) -> SharedTensor:
        return (-self)._add(other, 1, "sub")

    def __neg__(self) -> SharedTensor:
        return self._new(-self.share)

    # -- products ----------------------------------------------------------------------------
    def __mul__(self, other: object) -> SharedTensor:
        from sharedml.mpc import beaver
        from sharedml.mpc.material import Kind
        from sharedml.mpc.truncation import prefetch, rescale

        if isinstance(other, SharedTensor):
            try:
                shape = np.broadcast_shapes(self.shape, other.shape)
            except ValueError:
                raise self._fail("mul", f"shapes {self.shape} and {other.shape} do not broadcast") from None
            # the triple first: the dealer makes material in request order,
            # and the triple is needed one round before the truncation pair
            triple = self.mpc.provider.request(Kind.MUL, shape)
            pair = prefetch(self.mpc, shape, self.scale + other.scale)
            return rescale(beaver.mul(self, other, triple), pair)
        pub = np.asarray(other)
        self._check_broadcast("mul", pub.shape)
        if _is_int_public(other):
            return self._new(self.share * ring.as_ring(pub))
        enc = self._public(other, self.mpc.frac_bits)
        return rescale(self._new(self.share * enc, self.scale + self.mpc.frac_bits))

    __rmul__ = __mul__

    def __truediv__(self, other: object) -> SharedTensor:
        if isinstance(other, SharedTensor):
            from sharedml.mpc.nonlinear import div

            return div(self, other)
        with np.errstate(divide="ignore"):  # a zero divisor is refused as non-finite
            return self * (1.0 / np.asarray(other, dtype=np.float64))

    def __matmul__(self, other: object) -> SharedTensor:
        from sharedml.mpc import beaver
        from sharedml.mpc.truncation import prefetch, rescale

        if isinstance(other, SharedTensor):
            shape = beaver.matmul_shape(self, other)
            pair = prefetch(self.mpc, shape, self.scale + other.scale)
            return rescale(beaver.matmul(self, other), pair)
        return rescale(beaver.matmul_public(self, np.asarray(other), left=False))

    def __rmatmul__(self, other: object) -> SharedTensor:
        from sharedml.mpc import beaver
        from sharedml.mpc.truncation import rescale

        return rescale(beaver.matmul_public(self, np.asarray(other), left=True))

    def square(self) -> SharedTensor:
        return self * self

    # -- reductions and shape ---------------------------------------------------------------
    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> SharedTensor:
        return self._new(np.asarray(np.sum(self.share, axis=axis, keepdims=keepdims, dtype=ring.DTYPE)))

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> SharedTensor:
        total = self.sum(axis, keepdims)
        count = self.size // max(total.size, 1)
        if count == 0:
            raise self._fail("mean", "mean of an empty tensor")
        return total * (1.0 / count)

    def reshape(self, *shape: Any) -> SharedTensor:
        try:
            return self._new(self.share.reshape(*shape))
        except ValueError as exc:
            raise self._fail("reshape", str(exc)) from None

    def flatten(self) -> SharedTensor:
        return self._new(self.share.ravel().copy())

    def transpose(self, *axes: int) -> SharedTensor:
        return self._new(self.share.transpose(*axes))

    @property
    def T(self) -> SharedTensor:
        return self._new(self.share.T)

    def __getitem__(self, index: Any) -> SharedTensor:
        try:
            return self._new(self.share[index])
        except (IndexError, TypeError, ValueError) as exc:
            raise self._fail("index", str(exc)) from None

    def broadcast_to(self, shape: tuple[int, ...]) -> SharedTensor:
        self._check_broadcast("broadcast_to", shape)
        return self._new(np.broadcast_to(self.share, shape).copy())

    # -- nonlinear functions (see sharedml.mpc.nonlinear for ranges and bounds) ----------
    def sigmoid(self, method: str = "clipped") -> SharedTensor:
        from sharedml.mpc.nonlinear import sigmoid

        return sigmoid(self, method)

    def exp(self) -> SharedTensor:
        from sharedml.mpc.nonlinear import exp

        return exp(self)

    def relu(self) -> SharedTensor:
        from sharedml.mpc.functions import relu

        return relu(self)

    def reciprocal(self) -> SharedTensor:
        from sharedml.mpc.nonlinear import reciprocal

        return reciprocal(self)

    # -- comparisons (interactive; results are 0/1 integers) ----------------------------
    def __lt__(self, other: object) -> SharedTensor:
        from sharedml.mpc.functions import lt

        return lt(self, other)

    def __gt__(self, other: object) -> SharedTensor:
        from sharedml.mpc.functions import gt

        return gt(self, other)

    def __le__(self, other: object) -> SharedTensor:
        from sharedml.mpc.functions import gt

        return 1 - gt(self, other)

    def __ge__(self, other: object) -> SharedTensor:
        from sharedml.mpc.functions import lt

        return 1 - lt(self, other)


def concatenate(tensors: Sequence[SharedTensor], axis: int = 0) -> SharedTensor:
    """Join shared tensors along ``axis`` (local)."""
    if not tensors:
        raise ConfigError("concatenate: need at least one tensor")
    scale = max(t.scale for t in tensors)
    lifted = [t._lift(scale) for t in tensors]
    try:
        share = np.concatenate([t.share for t in lifted], axis=axis)
    except ValueError as exc:
        t0 = tensors[0]
        raise DataError(f"concatenate: {exc}", party=t0.mpc.party, step="concatenate") from None
    return SharedTensor(tensors[0].mpc, share, scale)


def stack(tensors: Sequence[SharedTensor], axis: int = 0) -> SharedTensor:
    """Stack shared tensors along a new ``axis`` (local)."""
    return concatenate([t.reshape(*t.shape[:axis], 1, *t.shape[axis:]) for t in tensors], axis)
