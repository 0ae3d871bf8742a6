"""Fixed-point quantisation of float updates into Z_2^k for secure sums (pure numpy).

A client's update ``x`` (float64, every coordinate in ``[-bound, bound]``) is
encoded as ``q = round(x · 2^f)`` in two's complement on Z_2^k (``k`` =
:attr:`Quantizer.ring_bits`, 64 or 32); masked encodings add up modulo 2^k
and the sum of ``m`` encodings decodes to ``Σ q / 2^f``. :class:`Quantizer`
picks ``f`` (``frac_bits``) as large as the ring allows for ``max_summands``
clients, so no sum can wrap.

Ring choice (:meth:`Quantizer.for_sum`): Z_2^32 when it still leaves
:data:`MIN_FRAC_BITS_32` = 24 fractional bits, i.e. when ``m · (bound · 2^24
+ 1/2) < 2^31`` — roughly ``bound · m < 128`` (a bound of 1 for up to 127
clients, 8 for up to 15: clipped model deltas, DP updates) — else Z_2^64.
The 32-bit ring halves the masks a client expands, the bytes it sends and
the words the server adds; the rounding term of its error bound below is
at most ``m · 2^-25`` per coordinate (3e-7 for ten clients). Flower's SecAgg+ works on a 32-bit
ring too (``modulus_range`` 2^32).

Error bound (tested in ``tests/fl/test_quantize.py``). For ``m ≤
max_summands`` updates inside the bound:

* encoding: ``x · 2^f`` is exact (a power-of-two scaling) and ``rint`` is
  off by at most 1/2, so each ``|q_i / 2^f - x_i| ≤ 2^-(f+1)``;
* the ring sum is exact: ``|Σ q_i| ≤ m (bound · 2^f + 1/2) < 2^(k−1)`` by
  the choice of ``f``, so no wrap-around;
* decoding converts an int64 (int32) to float64 (rounding to nearest, relative
  error ≤ 2^-53) and divides by 2^f exactly.

Hence ``|decode(Σ q_i) − Σ x_i| ≤ m · 2^-(f+1) + 2^-53 · |Σ q_i| / 2^f``,
which :meth:`Quantizer.error_bound` returns for a given sum. At the default
``bound = 2^20`` and 10 clients (Z_2^64), ``f = 39``: at most 1e-11 absolute
error per coordinate, far below the float32 resolution a model is usually
kept in; at ``bound = 1`` and 10 clients (Z_2^32), ``f = 27``: at most 4e-8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sharedml.errors import ConfigError, DataError

#: The rings a quantiser encodes into, by width: the unsigned dtype and its signed view.
RINGS: dict[int, tuple[type[np.unsignedinteger], type[np.signedinteger]]] = {
    64: (np.uint64, np.int64),
    32: (np.uint32, np.int32),
}
#: Fewest fractional bits :meth:`Quantizer.for_sum` accepts on the 32-bit ring.
MIN_FRAC_BITS_32 = 24


@dataclass(frozen=True)
class Quantizer:
    """Fixed-point encoder for sums of up to ``max_summands`` vectors bounded by ``bound``,
    on the ring Z_2^``ring_bits``."""

    bound: float = float(2**20)
    max_summands: int = 2
    ring_bits: int = 64

    @classmethod
    def for_sum(cls, bound: float, max_summands: int) -> Quantizer:
        """The 32-bit ring if it keeps :data:`MIN_FRAC_BITS_32` fractional bits, else 64."""
        try:
            narrow = cls(bound, max_summands, 32)
        except ConfigError:  # no room at all on 32 bits (or a bad bound, which 64 reports)
            return cls(bound, max_summands, 64)
        return narrow if narrow.frac_bits >= MIN_FRAC_BITS_32 else cls(bound, max_summands, 64)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.bound) and self.bound > 0):
            raise ConfigError(f"quantisation bound must be a positive number, got {self.bound}")
        if self.max_summands < 1:
            raise ConfigError(f"max_summands must be at least 1, got {self.max_summands}")
        if self.ring_bits not in RINGS:
            raise ConfigError(f"ring_bits must be one of {sorted(RINGS)}, got {self.ring_bits}")
        if self.frac_bits < 0:
            raise ConfigError(
                f"a bound of {self.bound:g} for {self.max_summands} clients leaves no room on "
                f"Z_2^{self.ring_bits}",
                remedy="lower the bound (updates are usually far below 2^40)",
            )

    @property
    def frac_bits(self) -> int:
        """Largest ``f`` with ``max_summands · (bound · 2^f + 1/2) < 2^(ring_bits − 1)``."""
        half = 2.0 ** (self.ring_bits - 1)
        room = half / self.max_summands - 0.5
        if room <= 0:
            return -1
        f = int(np.floor(np.log2(room / self.bound)))
        while f >= 0 and self.max_summands * (self.bound * 2.0**f + 0.5) >= half:
            f -= 1
        return f

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        """The ring's words: ``np.uint64`` or ``np.uint32``."""
        return RINGS[self.ring_bits][0]

    @property
    def scale(self) -> float:
        return float(2**self.frac_bits)

    def check(self, x: np.ndarray, *, what: str = "update") -> None:
        """Raise :class:`DataError` if ``x`` holds NaN/inf or values outside ``±bound``.

        Two reductions and no temporary array: NaN propagates through min and
        max and fails both comparisons, infinity fails the range test.
        """
        if not x.size:
            return
        lo, hi = float(x.min()), float(x.max())
        if -self.bound <= lo and hi <= self.bound:
            return
        if not np.isfinite(x).all():
            kind = "NaN" if np.isnan(x).any() else "infinity"
            raise DataError(f"the {what} holds {kind}", remedy="check the local training")
        raise DataError(
            f"the {what} has values in [{lo:.3g}, {hi:.3g}], outside the quantisation range "
            f"±{self.bound:g}",
            remedy="clip the update or raise the job's quantisation bound",
        )

    def encode(
        self, x: np.ndarray, out: np.ndarray | None = None, *, checked: bool = False
    ) -> np.ndarray:
        """``round(x · 2^f)`` as ring words (two's complement); :meth:`check` first unless
        ``checked``.

        ``out`` (the ring's dtype, same size) receives the encoding instead of a new array.
        """
        unsigned, signed = RINGS[self.ring_bits]
        x = np.asarray(x, dtype=np.float64)
        if not checked:
            self.check(x)
        scaled = x * self.scale
        np.rint(scaled, out=scaled)
        if out is None:
            return scaled.astype(signed).view(unsigned)
        np.copyto(out.view(signed), scaled.reshape(out.shape), casting="unsafe")
        return out

    def decode(self, total: np.ndarray) -> np.ndarray:
        """The float64 value of a ring sum of encodings."""
        unsigned, signed = RINGS[self.ring_bits]
        return np.asarray(total, dtype=unsigned).view(signed).astype(np.float64) / self.scale

    def error_bound(self, summands: int, total: np.ndarray | float = 0.0) -> np.ndarray:
        """Largest ``|decode(Σ q) − Σ x|`` per coordinate for ``summands`` encodings
        whose decoded sum is ``total`` (see the module docstring)."""
        if summands > self.max_summands:
            raise DataError(f"{summands} summands exceed the {self.max_summands} planned for")
        rounding = summands * 2.0 ** -(self.frac_bits + 1)
        return rounding + 2.0**-53 * (np.abs(np.asarray(total, dtype=np.float64)) + rounding)
