"""Nonlinear functions on shared reals, with stated error bounds.

Bounds are absolute errors against float64 at the default ``frac_bits = 16``
over the stated input ranges; ``tests/mpc/test_nonlinear.py`` checks every one
on a dense grid plus random points. Outside the range the result is
meaningless unless the entry says it saturates.

=================== =========================  ===============================
function            input range                error bound (≤ either)
=================== =========================  ===============================
sigmoid "poly"      [-4, 4]                    abs. 0.024
sigmoid "clipped"   all reals (saturates)      abs. 0.024  (|x| < 32750 with bits=32)
sigmoid "accurate"  all reals (saturates)      abs. 5e-4
exp                 [-16, 10] (clamped)        rel. 1e-3, abs. 5e-5
reciprocal          [0.05, 500]                rel. 1e-3, abs. 5e-5
rsqrt, sqrt         [0.05, 100]·4^k            rel. 2e-3, abs. 5e-5
log                 [0.05, 100]·2^k            abs. 2e-3
div x / y           y in [0.05, 500]           rel. 1e-3 + |x|·5e-5
=================== =========================  ===============================

``k`` is 0 unless ``max_value`` asks for a wider range (the input is scaled by
a public power of 4 or 2, trading precision at the low end). Rounds for two
parties: sigmoid "poly" 4, "clipped" 13, "accurate" ~50, exp ~35, reciprocal
~75, log ~130 (``bench/mpc.py`` prints throughput).

Methods (references: CrypTen, Knott et al., NeurIPS 2021, §C; Mohassel &
Zhang, SecureML, S&P 2017 for the cheap sigmoid):

* **sigmoid "poly"**: 0.5 + c1·x + c3·x³, a minimax fit on [-4, 4]; only two
  Beaver rounds and two truncations. For inputs known to be small.
* **sigmoid "clipped"** (the cheap default): the same cubic, with the output
  forced to 0 below -4 and 1 above 4 (one batched comparison of ±x against 4).
* **sigmoid "accurate"**: σ(|x|) = 1 / (1 + e^-|x|) with |x| clamped at 16,
  e^-t by the exponential below, 1/d for d ∈ [1, 2] by three Newton steps
  from the linear guess 1.457 - 0.5·d; then σ(x) = σ(|x|) or 1 - σ(|x|).
* **exp**: clamp to [-16, 10], u = x/32 exactly (by reinterpreting the scale),
  e^u by its degree-6 Taylor polynomial, then five squarings.
* **reciprocal**: Newton y ← y(2 - x·y), 10 steps from y0 = 3·e^(0.5 - x) + 0.003.
* **rsqrt**: Newton y ← y(3 - x·y²)/2, 4 steps from
  y0 = 2.2·e^(-(x/2 + 0.2)) + 0.2 - x/1024; **sqrt** = x·rsqrt(x).
* **log**: Householder steps y ← y - Σ_{i≤8} h^i/i with h = 1 - x·e^(-y), two
  steps from y0 = x/120 - 20·e^(-2x - 1) + 3.

The cheap sigmoids SGD uses as its link (SS-LR; the end of this module):
:data:`PIECEWISE` interpolations (``pwl``: six knots, max error 0.022;
``pwl4``: 0.041) evaluated with one batched comparison and one Beaver round
(:func:`piecewise_sigmoid`, or :func:`piecewise_raw` when the caller folds
the last truncation into its next product), and the clipped odd polynomials
of :data:`SIGMOID_APPROX` (:func:`approx_sigmoid`). Their plaintext
definitions, the oracle of the tests, are in
:func:`sharedml.learn.linear.sigmoid`.

Reveals nothing beyond the masked openings of the products and comparisons
they use. Semi-honest, as the provider.
"""

from __future__ import annotations

import numpy as np

from sharedml.errors import ProtocolAbort
from sharedml.mpc.beaver import mul
from sharedml.mpc.boolean import bit_mul, msb_bits
from sharedml.mpc.functions import ltz_many
from sharedml.mpc.tensor import SharedTensor, concatenate
from sharedml.mpc.truncation import rescale, truncate

SIGMOID_POLY = (0.21457451, -0.00623803)  # minimax odd cubic for σ(x) - 0.5 on [-4, 4]
SIGMOID_POLY_RANGE = 4.0
EXP_CLAMP = (-16.0, 10.0)
_EXP_HALVINGS = 5
_EXP_DEGREE = 6


def _cubic(x: SharedTensor) -> SharedTensor:
    """0.5 + c1·x + c3·x³ in four rounds: x², then x·x² untruncated, then the
    public coefficients applied at scale 3f and one truncation by 2f."""
    c1, c3 = SIGMOID_POLY
    f = x.mpc.frac_bits
    x3 = mul(x, x * x)  # scale 2f
    acc = x3 * np.int64(round(c3 * 2**f))
    acc = acc + x._lift(2 * f) * np.int64(round(c1 * 2**f))
    return rescale(SharedTensor(x.mpc, acc.share, 3 * f)) + 0.5


def sigmoid(x: SharedTensor, method: str = "clipped", *, bits: int = 64) -> SharedTensor:
    """The logistic function; ``method`` is "poly", "clipped" or "accurate".

    ``bits`` (32, 16, 8) makes the comparisons of "clipped" and "accurate"
    narrow (:func:`sharedml.mpc.functions.lt`): the caller promises
    |x| < 2^(bits-1-f) - 16 (about 32750 at 32 bits, f = 16).
    """
    if method == "poly":
        return _cubic(x)
    if method == "clipped":
        r = SIGMOID_POLY_RANGE
        below, above = ltz_many([x + r, r - x], bits)  # [x < -r], [x > r]
        inside = 1 - below - above
        return mul(inside, _cubic(x)) + above
    if method == "accurate":
        return _sigmoid_accurate(x, bits)
    raise ValueError(f"sigmoid: unknown method {method!r}")


def _sigmoid_accurate(x: SharedTensor, bits: int = 64) -> SharedTensor:
    neg, below, above = ltz_many([x, x + 16.0, 16.0 - x], bits)
    # clamp to [-16, 16], then |x|
    xc = x + mul(concatenate([below, above]), concatenate([-16.0 - x, 16.0 - x])).reshape(
        2, *x.shape
    ).sum(axis=0)
    t = mul(1 - 2 * neg, xc)
    e = _exp_core(-t)
    y = _reciprocal_1_2(e + 1.0)
    return y + mul(neg, 1 - 2 * y)


def _reciprocal_1_2(d: SharedTensor) -> SharedTensor:
    """1/d for d in [1, 2]: three Newton steps from the linear guess."""
    y = 1.457 - d * 0.5
    for _ in range(3):
        y = y * (2.0 - d * y)
    return y


def _exp_core(x: SharedTensor) -> SharedTensor:
    """e^x for x in [-16, 10] (no clamping)."""
    u = SharedTensor(x.mpc, x.share, x.scale + _EXP_HALVINGS)  # x / 32, exactly
    # Horner: 1 + u(1 + u/2(1 + u/3(... (1 + u/6))))
    y = rescale(u * (1.0 / _EXP_DEGREE)) + 1.0
    for k in range(_EXP_DEGREE - 1, 0, -1):
        y = rescale(mul(u, y)) * (1.0 / k) + 1.0
    for _ in range(_EXP_HALVINGS):
        y = y * y
    return y


def exp(x: SharedTensor) -> SharedTensor:
    """e^x; inputs are clamped to [-16, 10] (one batched comparison)."""
    lo, hi = EXP_CLAMP
    below, above = ltz_many([x - lo, hi - x])
    xc = x + mul(concatenate([below, above]), concatenate([lo - x, hi - x])).reshape(
        2, *x.shape
    ).sum(axis=0)
    return _exp_core(xc)


def reciprocal(x: SharedTensor, iterations: int = 10) -> SharedTensor:
    """1/x for x in [0.05, 500]."""
    y = exp(0.5 - x) * 3.0 + 0.003
    for _ in range(iterations):
        y = y * (2.0 - x * y)
    return y


def _powers_of(base: int, max_value: float) -> int:
    """The k with base^k · 100 ≥ max_value (0 when max_value ≤ 100)."""
    return max(0, int(np.ceil(np.log(max(max_value, 1.0) / 100.0) / np.log(base))))


def rsqrt(x: SharedTensor, iterations: int = 6, max_value: float = 100.0) -> SharedTensor:
    """1/√x for x in [0.05·4^k, 100·4^k], k the least with 100·4^k ≥ ``max_value``."""
    k = _powers_of(4, max_value)
    xs = x * (0.25**k) if k else x
    y = exp(-(xs * 0.5 + 0.2)) * 2.2 + 0.2 - xs * (1.0 / 1024)
    for _ in range(iterations):
        y = y * (3.0 - xs * (y * y)) * 0.5
    return y * (0.5**k) if k else y


def sqrt(x: SharedTensor, max_value: float = 100.0) -> SharedTensor:
    """√x on the domain of :func:`rsqrt`."""
    return x * rsqrt(x, max_value=max_value)


def log(
    x: SharedTensor, iterations: int = 2, order: int = 6, max_value: float = 100.0
) -> SharedTensor:
    """ln x for x in [0.05·2^k, 100·2^k], k the least with 100·2^k ≥ ``max_value``."""
    k = _powers_of(2, max_value)
    if k:
        return log(x * (0.5**k), iterations, order) + k * float(np.log(2.0))
    y = x * (1.0 / 120) - exp(-2 * x - 1.0) * 20.0 + 3.0
    for _ in range(iterations):
        h = 1.0 - x * exp(-y)
        powers = [h]
        for _ in range(order - 1):
            powers.append(powers[-1] * h)
        corr = powers[0]
        for i, p in enumerate(powers[1:], start=2):
            corr = corr + p * (1.0 / i)
        y = y - corr
    return y


def div(x: SharedTensor, y: SharedTensor) -> SharedTensor:
    """x / y for y in [0.05, 500]."""
    return x * reciprocal(y)


# -- the cheap sigmoids of SGD (SS-LR's link): tables, and their evaluation on shares ----
#: Odd-polynomial coefficients (c1, c3, c5, ...) of ``sigmoid(z) - 0.5`` on a
#: clipped interval, least-squares fits computed once with numpy. Name ->
#: (clip bound or None, coefficients). ``taylor1`` needs no comparison and no
#: multiplication; the clipped fits need two secure comparisons per batch.
SIGMOID_APPROX: dict[str, tuple[float | None, tuple[float, ...]]] = {
    "taylor1": (None, (0.25,)),
    "seg3": (2.0, (0.25,)),
    "clip_poly3": (4.0, (0.21657398, -0.00659948)),
    "clip_poly5": (4.0, (0.23952135, -0.01328579, 0.00037573)),
}
#: Piecewise-linear interpolations of ``sigmoid`` (flat outside the outer
#: knots): name -> knots. ``p(z) = s(t_1) + sum_j d_j relu(z - t_j)``; under MPC
#: all ``[z > t_j]`` come from one batched comparison and all ``relu`` terms
#: from one Beaver round, so more knots cost no extra round (only computation).
#: Six knots: max error 0.022; four: 0.041. With either, SGD reaches
#: scikit-learn's AUC on default_credit (0.7137-0.7143 and 0.7146-0.7153 over
#: three shuffles, against 0.7135).
PIECEWISE: dict[str, tuple[float, ...]] = {
    "pwl": (-4.0, -2.0, -0.75, 0.75, 2.0, 4.0),
    "pwl4": (-4.0, -1.5, 1.5, 4.0),
}


def piecewise_terms(knots: tuple[float, ...]) -> tuple[float, np.ndarray, np.ndarray]:
    """``(s(t_1), t, d)`` of the piecewise-linear sigmoid through ``knots``."""
    t = np.asarray(knots, dtype=np.float64)
    s = 0.5 * (1.0 + np.tanh(0.5 * t))
    slopes = np.diff(s) / np.diff(t)
    d = np.diff(np.r_[0.0, slopes, 0.0])
    return float(s[0]), t, d


def piecewise_sigmoid(z_raw: SharedTensor, knots: tuple[float, ...]) -> SharedTensor:
    """The piecewise-linear sigmoid of :data:`PIECEWISE`
    on untruncated scores ``z_raw`` (2f fractional bits), in three steps:

    1. one batched comparison gives every ``[z > t_j]`` (on ``t_j - z``), in
       32-bit lanes after each party drops the low ``2f - 8`` bits of its
       share (:func:`~sharedml.mpc.boolean.msb_bits` with ``drop``): six
       rounds instead of seven, half the traffic. Exact for
       |z - t_j| < 2^23 (the final truncation already needs |z| < 2^13) except
       that ``[z > t_j]`` may read 1 for ``t_j - (n-1)·2^-8 < z ≤ t_j``, where
       ``relu`` is within (n-1)·2^-8 of 0: the output moves by at most
       ``|d_j|·(n-1)·2^-8`` (< 0.001 for two parties), against the
       interpolation's own 0.022;
    2. one round gives every ``relu(z - t_j) = [z > t_j](z - t_j)``: the bits'
       conversion to arithmetic shares is folded into the product
       (:func:`~sharedml.mpc.boolean.bit_mul`; bits carry no fractional bits,
       so nothing to truncate);
    3. ``s(t_1) + sum_j d_j relu_j`` is formed locally at 3f bits and truncated
       once by 2f — which is also the truncation of ``z`` itself. In training
       with a dealer that truncation is folded into the gradient's product
       (:func:`piecewise_raw` and ``FixedOperand.truncated_matmul_t``).
    """
    acc, bits, base = piecewise_raw(z_raw, knots)
    out = truncate(acc, bits)
    out.scale = z_raw.mpc.frac_bits
    return out + base


def piecewise_raw(
    z_raw: SharedTensor, knots: tuple[float, ...]
) -> tuple[SharedTensor, int, float]:
    """Steps 1-2 of :func:`piecewise_sigmoid` and the sum of step 3, untruncated:
    ``(acc, 2f, s(t_1))`` with ``sigmoid~(z) = ⌊acc / 2^2f⌋ + s(t_1)``."""
    mpc = z_raw.mpc
    f = mpc.frac_bits
    if z_raw.scale != 2 * f:
        raise ProtocolAbort("piecewise sigmoid expects untruncated scores", party=mpc.party)
    base, t, d = piecewise_terms(knots)
    diffs = concatenate([z_raw - float(tj) for tj in t], axis=0)
    drop = 2 * f - 8
    bits = msb_bits(-diffs, 32, drop=drop) if 0 <= drop <= 32 else msb_bits(-diffs)
    relu = bit_mul(bits, diffs)
    n = z_raw.shape[0]
    acc = np.zeros(z_raw.shape, dtype=np.uint64)
    for j, dj in enumerate(d):
        enc = np.uint64(round(float(dj) * (1 << f)) % (1 << 64))
        acc += relu.share[j * n : (j + 1) * n] * enc
    return SharedTensor(mpc, acc, 3 * f), 2 * f, base


def approx_sigmoid(z: SharedTensor, approx: str) -> SharedTensor:
    """The approximation ``approx`` of ``sigmoid`` on a shared column ``z``
    (formulas in :data:`SIGMOID_APPROX`)."""
    if approx == "accurate":
        return sigmoid(z, "accurate")
    bound, coefs = SIGMOID_APPROX[approx]
    x = z if bound is None else _clip(z, bound)
    if len(coefs) == 1:
        return x * coefs[0] + 0.5
    # Horner in x^2: c1 + x^2 (c3 + x^2 (c5 ...)), then times x. The first
    # product x^2 * c_top is truncated once (2f + f -> f): one round saved.
    acc = mul(x, x) * coefs[-1] + coefs[-2]
    if len(coefs) > 2:
        sq = x * x
        for c in reversed(coefs[:-2]):
            acc = (sq * acc) + c
    return x * acc + 0.5


def _clip(z: SharedTensor, bound: float) -> SharedTensor:
    """``clip(z, -bound, bound)``: one comparison of ``[z; -z]`` with ``-bound``
    and one Beaver product of the bits with ``[-bound - z; bound - z]``."""
    n = z.shape[0]
    both = concatenate([z, -z], axis=0)
    bits = both < -bound
    fix = bits * concatenate([-z - bound, -z + bound], axis=0)
    return z + fix[:n] + fix[n:]
