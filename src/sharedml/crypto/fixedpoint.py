"""Fixed-point encoding of reals on Z_2^64.

Math only. A real ``x`` is stored as the ring element ``round(x · 2^f)``
(two's complement), ``f`` = ``frac_bits`` (default 16, :data:`sharedml.session.DEFAULT_FRAC_BITS`).

Range and precision, for ``f`` fractional bits:

* resolution (one *ulp*) ``2^-f`` — 1.5e-5 at ``f = 16``; encoding rounds to
  nearest, so the encoding error is at most half an ulp;
* representable values ``[-2^(63-f), 2^(63-f))`` — ±1.4e14 at ``f = 16``;
  :meth:`FixedPoint.encode` refuses anything outside (or NaN/inf) with a
  :class:`~sharedml.errors.DataError`;
* a product of two encodings carries ``2f`` fractional bits before it is
  truncated, so secure multiplication needs ``|x·y| < 2^(62-2f)`` (2^30 ≈ 1.07e9
  at ``f = 16``); see :mod:`sharedml.mpc.truncation` for the exact bound and
  the error of each truncation method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sharedml.crypto import ring
from sharedml.errors import ConfigError, DataError


@dataclass(frozen=True)
class FixedPoint:
    """Encoder for ``frac_bits`` fractional bits."""

    frac_bits: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.frac_bits <= 40:
            raise ConfigError(f"frac_bits must be in [0, 40], got {self.frac_bits}")

    @property
    def scale(self) -> int:
        return 1 << self.frac_bits

    @property
    def ulp(self) -> float:
        """The resolution ``2^-f``."""
        return 1.0 / self.scale

    @property
    def limit(self) -> float:
        """Encodable values satisfy ``-limit ≤ x < limit``."""
        return float(2 ** (63 - self.frac_bits))

    @property
    def mul_limit(self) -> float:
        """Products must satisfy ``|x·y| < mul_limit`` to be truncated exactly."""
        return float(2 ** (62 - 2 * self.frac_bits))

    def encode(self, x: object, *, what: str = "value") -> np.ndarray:
        """``round(x·2^f)`` as ring elements; rejects NaN, inf and out-of-range values."""
        arr = np.asarray(x, dtype=np.float64)
        scaled = np.rint(arr * self.scale)
        if not np.all(np.isfinite(scaled)):
            raise DataError(f"cannot encode {what}: it holds NaN or infinity")
        if scaled.size and (scaled.max() >= 2.0**63 or scaled.min() < -(2.0**63)):
            raise DataError(
                f"cannot encode {what}: values must lie in [-{self.limit:g}, {self.limit:g}) "
                f"at {self.frac_bits} fractional bits",
                remedy="scale the data or lower frac_bits",
            )
        return scaled.astype(np.int64).view(ring.DTYPE)

    def decode(self, a: np.ndarray) -> np.ndarray:
        """The real values of ring elements (float64)."""
        return ring.to_signed(np.asarray(a, dtype=ring.DTYPE)).astype(np.float64) / self.scale

    def encode_int(self, x: object) -> np.ndarray:
        """Integers as ring elements with no fractional bits (for bits, counts)."""
        return ring.as_ring(np.asarray(x))
