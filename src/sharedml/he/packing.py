"""Several fixed-point values per Paillier plaintext (pure math, no I/O).

A plaintext is read as signed slots of ``slot_bits`` bits each::

    m = v_0 + v_1 * 2^w + v_2 * 2^(2w) + ...      (w = slot_bits, |v_j| < 2^(w-1))

Adding plaintexts adds slot by slot as long as no slot's running sum leaves
``(-2^(w-1), 2^(w-1))``: :func:`SlotLayout.for_sums` sizes ``w`` from the
number of rows summed and the values' bound, so a sum over every row fits.
Slots are signed (two's-complement style: a negative slot borrows one from
the slot above, and :func:`unpack_slots` returns it), so no per-slot offset
and no row count are needed to decode — the alternative, adding an offset to
make each value non-negative, needs the count of rows in every sum to remove
it again, which a bin sum does not carry.

Shifting a ciphertext by ``k`` slots is ``c^(2^(k w))`` (``k w`` squarings),
so :func:`pack_ciphertexts` packs ``s`` ciphertexts with ``(s-1)`` shifts by
Horner's rule, and the key owner decrypts once per ``s`` sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
import numpy as np
from gmpy2 import mpz

from sharedml.errors import ConfigError


@dataclass(frozen=True)
class SlotLayout:
    """Fixed-point scale and slot width for values summed over up to ``n_rows`` rows."""

    frac_bits: int
    slot_bits: int

    @classmethod
    def for_sums(cls, n_rows: int, bound: float, frac_bits: int = 24) -> SlotLayout:
        """Slots wide enough for the sum of ``n_rows`` values of magnitude <= ``bound``."""
        if not (bound >= 0 and math.isfinite(bound)):
            raise ConfigError(f"value bound must be finite and non-negative, got {bound}")
        top = max(1, n_rows) * (bound * 2.0**frac_bits + 1.0)
        return cls(frac_bits, math.ceil(math.log2(top + 1)) + 2)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Fixed-point integers (int64) of ``values``."""
        scaled = np.rint(np.asarray(values, dtype=np.float64) * 2.0**self.frac_bits)
        if np.any(np.abs(scaled) >= 2.0 ** min(62, self.slot_bits - 1)):
            raise ConfigError("value outside the slot layout's bound")
        return scaled.astype(np.int64)

    def decode(self, ints: Sequence[int] | np.ndarray) -> np.ndarray:
        return np.asarray(ints, dtype=np.float64) / 2.0**self.frac_bits

    def join(self, columns: Sequence[np.ndarray]) -> list[int]:
        """Row-wise plaintexts ``c_0 + c_1 2^w + ...`` from int64 columns."""
        w = self.slot_bits
        out = [int(v) for v in columns[-1]]
        for col in reversed(columns[:-1]):
            out = [(hi << w) + int(lo) for hi, lo in zip(out, col, strict=True)]
        return out

    def slots_per_plaintext(self, plaintext_bits: int) -> int:
        """How many slots fit below half the modulus (room for the sign)."""
        return (plaintext_bits - 1) // self.slot_bits


def unpack_slots(m: int, slot_bits: int, count: int) -> list[int]:
    """The ``count`` signed slots of the integer ``m`` (lowest first)."""
    half, full, mask = 1 << (slot_bits - 1), 1 << slot_bits, (1 << slot_bits) - 1
    out = []
    for _ in range(count):
        v = m & mask
        if v >= half:
            v -= full
        out.append(v)
        m = (m - v) >> slot_bits
    if m != 0:
        raise ValueError("packed plaintext has bits above its last slot (overflow)")
    return out


def pack_ciphertexts(cts: Sequence[mpz], shift_bits: int, n_sq: mpz) -> mpz:
    """``prod_j cts[j]^(2^(j * shift_bits))``: an encryption of ``sum_j m_j 2^(j shift)``."""
    acc = mpz(cts[-1])
    shift = mpz(1) << shift_bits
    for c in reversed(cts[:-1]):
        acc = gmpy2.powmod(acc, shift, n_sq) * c % n_sq
    return acc
