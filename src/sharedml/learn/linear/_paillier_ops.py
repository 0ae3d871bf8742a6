"""Paillier linear algebra for HE-LR: encrypted vector times plaintext matrix.

Pure math on :mod:`gmpy2` integers, no protocol logic. ``X^T Enc(d)`` is one
multi-exponentiation per column, ``prod_i c_i^{x_ij}``; the bucket method
(Pippenger) does it in about ``ceil(b/w) * (n + 2^(w+1))`` modular
multiplications for ``b``-bit exponents instead of ``1.5 * b * n``, which is
what makes HE-LR usable on tens of thousands of rows.
"""

from __future__ import annotations

import numpy as np
from gmpy2 import mpz


def multiexp(bases: list[mpz], exps: np.ndarray, modulus: mpz, window: int = 6) -> mpz:
    """``prod_i bases[i] ** exps[i] mod modulus`` for non-negative integer ``exps``."""
    exps = np.asarray(exps, dtype=np.int64)
    if exps.size and exps.min() < 0:
        raise ValueError("multiexp needs non-negative exponents")
    top = int(exps.max()) if exps.size else 0
    if top == 0:
        return mpz(1)
    n_windows = (top.bit_length() + window - 1) // window
    mask = (1 << window) - 1
    result = mpz(1)
    for t in reversed(range(n_windows)):
        if result != 1:
            for _ in range(window):
                result = result * result % modulus
        digits = (exps >> (t * window)) & mask
        buckets: dict[int, mpz] = {}
        for i in np.flatnonzero(digits):
            k = int(digits[i])
            b = buckets.get(k)
            buckets[k] = bases[i] if b is None else b * bases[i] % modulus
        if not buckets:
            continue
        running = mpz(1)
        acc = mpz(1)
        for k in range(max(buckets), 0, -1):
            b = buckets.get(k)
            if b is not None:
                running = running * b % modulus
            acc = acc * running % modulus
        result = result * acc % modulus
    return result


def quantize_columns(X: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``X * 2^bits`` rounded, split into non-negative integers and a per-column
    integer offset: ``round(X * 2^bits) == q + offset``."""
    scaled = np.round(np.asarray(X, dtype=np.float64) * (1 << bits)).astype(np.int64)
    offset = scaled.min(axis=0)
    return scaled - offset, offset


def signed_to_bytes(values: list[int], width: int) -> np.ndarray:
    """Signed integers as one uint8 array of fixed-width big-endian words."""
    return np.frombuffer(
        b"".join(int(v).to_bytes(width, "big", signed=True) for v in values), dtype=np.uint8
    )


def bytes_to_signed(data: np.ndarray | bytes, width: int) -> list[int]:
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    if len(raw) % width:
        raise ValueError(f"buffer of {len(raw)} bytes is not a multiple of {width}")
    return [
        int.from_bytes(raw[i : i + width], "big", signed=True) for i in range(0, len(raw), width)
    ]
