"""The optimisers of the secret-shared MLP: SGD and Adam on shares.

Both take every parameter (scale f) and its untruncated batch-summed gradient
(2f) as one flat vector, so a step costs the same rounds whatever the
network's size. ``decay`` is 1 where weight decay applies, 0 for biases.

**SGD** — ``w ← w (1 - lr·l2·decay) - (lr / n) g`` in one truncation: both
terms are brought to 2f + UPDATE_BITS fractional bits with public integer
factors and truncated once by f + UPDATE_BITS (exact to one ulp while |w| and
|lr·g/n| stay below 2^(62 - 2f - UPDATE_BITS) = 1024 at f = 16).

**Adam** (decoupled weight decay), per step t:

1. ``g = clip(g_sum / n, ±GRAD_CLIP)`` at f + 8 bits — one truncation (the
   division is a public factor), one 32-bit comparison and one product;
2. ``m ← β1 m + (1-β1) g`` (f + 8 bits, so mean gradients of 10^-4 keep
   three digits) and ``g²`` (to 2f bits) in one product and one truncation;
   ``s ← β2 s + g²`` (Adam's v = (1-β2) s; 2f bits, so squared gradients of
   10^-8 keep two digits; s < 2^14 at 3f bits needs GRAD_CLIP² / (1-β2) <
   2^14, so β2 ≤ 0.999) in one more;
3. ``u = 1 + v̂ / ε² = 1 + s (1-β2) / (ε² (1 - β2^t))`` — one truncation
   (GRAD_CLIP / ε < 2^15 keeps u below 2^30 before the cap);
4. ``r = 1/√min(u, U_MAX)`` by :func:`rsqrt_capped` (one batched comparison
   of u with 4, 16, ..., 4^10 normalises u to [1, 4] and gives the cap; five
   Newton steps; r at 2f bits) and ``m·r`` truncated back to 2f;
5. ``w ← w (1 - lr·l2·decay) - lr / (ε (1 - β1^t)) · m·r`` — one product
   and one truncation, as SGD. Adam needs ``frac_bits = 16`` (the scales
   above are chosen for it).

The plaintext twin (:class:`sharedml.learn.nn._core.Adam`) computes the same
formula; Adam costs about 40 rounds per batch more than SGD, independent of
the number of parameters.

Reveals nothing beyond the masked openings of products, comparisons and
truncations. Semi-honest, as the randomness provider. Reference: Kingma & Ba,
"Adam", ICLR 2015; Loshchilov & Hutter, "Decoupled weight decay
regularization", ICLR 2019.
"""

from __future__ import annotations

import math

import numpy as np

from sharedml.errors import ConfigError
from sharedml.learn.nn._core import GRAD_CLIP, U_MAX
from sharedml.mpc import SharedTensor, beaver, concatenate, truncate
from sharedml.mpc.context import MPC

#: extra fractional bits of the public factors in an update
UPDATE_BITS = 20
#: extra fractional bits of Adam's gradient and first moment over the weights'
MOMENT_BITS = 8
#: Newton steps of the inverse square root on [1, 4] from a start within 31%
RSQRT_STEPS = 5


def _factor(value: float, bits: int) -> np.uint64:
    return np.int64(round(value * float(1 << bits))).astype(np.uint64)


def _truncated(mpc: MPC, share: np.ndarray, scale: int, bits: int) -> SharedTensor:
    out = truncate(SharedTensor(mpc, share, scale), bits)
    out.scale = scale - bits
    return out


def decayed_step(
    w: SharedTensor, delta_raw: SharedTensor, decay: np.ndarray, keep: float, rate: float
) -> SharedTensor:
    """``w (1 - keep·decay) - rate · delta`` with ``delta_raw`` at 2f: one truncation."""
    mpc = w.mpc
    f = mpc.frac_bits
    kw = np.round((1.0 - keep * decay) * float(1 << (f + UPDATE_BITS))).astype(np.int64)
    both = w.share * kw.view(np.uint64) - delta_raw.share * _factor(rate, UPDATE_BITS)
    return _truncated(mpc, both, 2 * f + UPDATE_BITS, f + UPDATE_BITS)


class SharedSGD:
    """Mini-batch SGD with weight decay on shares (see module docstring)."""

    def step(
        self, w: SharedTensor, g_raw: SharedTensor, decay: np.ndarray, lr: float, n: int, l2: float
    ) -> SharedTensor:
        return decayed_step(w, g_raw, decay, lr * l2, lr / n)


class SharedAdam:
    """Adam on shares (see module docstring); ``g`` and ``m`` at f + 8 bits
    (MOMENT_BITS more than the weights, so mean gradients of 10^-4 keep three
    digits), ``v`` as ``s = v / (1 - β2)`` at 2f."""

    def __init__(self, mpc: MPC, size: int, beta1: float, beta2: float, eps: float) -> None:
        if mpc.frac_bits != 16:
            raise ConfigError(
                "Adam on shares is bounded for frac_bits = 16", remedy="use optimizer: sgd"
            )
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = 0
        self.m = SharedTensor(mpc, np.zeros(size, dtype=np.uint64), mpc.frac_bits + MOMENT_BITS)
        # s = Σ β2^(t-i) g_i² (Adam's v without the factor 1 - β2, so small
        # squared gradients keep their digits), at 2f bits
        self.s = SharedTensor(mpc, np.zeros(size, dtype=np.uint64), 2 * mpc.frac_bits)

    def step(
        self, w: SharedTensor, g_raw: SharedTensor, decay: np.ndarray, lr: float, n: int, l2: float
    ) -> SharedTensor:
        mpc = w.mpc
        f = mpc.frac_bits
        fm = f + MOMENT_BITS
        self.t += 1
        b1, b2, eps, t = self.beta1, self.beta2, self.eps, self.t
        scaled = g_raw.share * _factor(1.0 / n, UPDATE_BITS)
        g = _truncated(mpc, scaled, 2 * f + UPDATE_BITS, 2 * f + UPDATE_BITS - fm)
        g = _clip(g, GRAD_CLIP, drop=MOMENT_BITS)
        g2 = beaver.mul(g, g)  # 2 fm bits
        # m: fm + f -> fm and g²: 2 fm -> 2 fm - f, in one truncation by f
        m_raw = self.m.share * _factor(b1, f) + g.share * _factor(1 - b1, f)
        both = _truncated(mpc, np.concatenate([m_raw, g2.share]), 2 * fm, f).share
        size = m_raw.size
        self.m = SharedTensor(mpc, both[:size], fm)
        g2_share = both[size:]  # 2 fm - f = 2f bits (f = 16)
        s_raw = self.s.share * _factor(b2, f) + (g2_share << np.uint64(f))
        self.s = _truncated(mpc, s_raw, 3 * f, f)
        c = (1.0 - b2) / (eps * eps * (1.0 - b2**t))  # u = 1 + v̂/ε² = 1 + c·s
        shift = max(0, 16 - math.floor(math.log2(c)))  # c's integer factor keeps 16 bits
        u = _truncated(mpc, self.s.share * _factor(c, shift), 2 * f + shift, f + shift) + 1.0
        r = rsqrt_capped(u)  # 2f
        mr = _truncated(mpc, beaver.mul(self.m, r).share, fm + 2 * f, fm)
        return decayed_step(w, mr, decay, lr * l2, lr / (eps * (1.0 - b1**t)))


def _clip(x: SharedTensor, bound: float, drop: int) -> SharedTensor:
    """``clip(x, ±bound)`` for a vector with |x| < 2^(31 + drop) ring units:
    one 32-bit comparison after dropping ``drop`` bits (which may misread x
    within (n-1)·2^drop units of ±bound: the result is then that close to
    ±bound too) and one product."""
    from sharedml.mpc.boolean import ltz

    n = x.size
    signs = ltz(concatenate([x + bound, bound - x]), 32, drop=drop)  # [x < -b], [x > b]
    fix = beaver.mul(signs, concatenate([-x - bound, -x + bound]))
    return x + fix[:n] + fix[n:]


def rsqrt_capped(u: SharedTensor) -> SharedTensor:
    """``1 / √min(u, U_MAX)`` at 2f bits, for a vector u ≥ 1 at f bits (u < 2^30).

    1. One batched comparison gives ``[u > 4^k]`` for k = 1..10 (32-bit lanes
       after dropping f bits: a u within 1 above a threshold may read as
       below it; the steps below tolerate that). Their differences are the
       one-hot bucket ``u ∈ (4^k, 4^(k+1)]`` (k = 10: above the cap).
    2. ``u_n = u · 4^-k`` ∈ [1, 4] (and 1 above the cap) with one product of
       u and the bucket's factor, which is linear in the bits and carried at
       2f bits so 4^-10 is exact; one truncation.
    3. ``y ≈ 1/√u_n`` from the start ``1.2 - 0.15·u_n`` (within 31%) by five
       Newton steps ``y ← y (1.5 - (u_n / 2) y²)`` (relative error below 10^-9
       before fixed-point rounding; u_n / 2 is u_n's shares read at f + 1 bits).
    4. ``1/√u = y · 2^-k``: one product with the bucket's factor (2f bits),
       one truncation by f.
    """
    from sharedml.mpc.boolean import ltz

    mpc = u.mpc
    f = mpc.frac_bits
    top = round(math.log(U_MAX, 4))
    n = u.size
    diffs = concatenate([(u - 4.0**k).reshape(-1) for k in range(1, top + 1)])
    above = ltz(-diffs, 32, drop=f).share.reshape(top, n)  # [u > 4^k], integers
    ones = np.full((1, n), 1 if mpc.index == 0 else 0, dtype=np.uint64)
    onehot = np.vstack([ones, above]) - np.vstack([above, np.zeros((1, n), np.uint64)])

    def bucket_factor(per_bucket: np.ndarray) -> SharedTensor:
        enc = np.round(per_bucket * float(1 << 2 * f)).astype(np.int64).view(np.uint64)
        return SharedTensor(mpc, (onehot * enc[:, None]).sum(axis=0, dtype=np.uint64), 2 * f)

    quarter = 4.0 ** -np.arange(top + 1)
    quarter[-1] = 0.0  # above the cap: u_n = 1 exactly (added below)
    over = SharedTensor(mpc, above[-1], 0)
    un = _truncated(mpc, beaver.mul(bucket_factor(quarter), u).share, 3 * f, 2 * f) + over
    half = SharedTensor(mpc, un.share, f + 1)
    y = 1.2 - un * 0.15
    for _ in range(RSQRT_STEPS):
        y = y * (1.5 - half * (y * y))
    r = beaver.mul(y, bucket_factor(2.0 ** -np.arange(top + 1)))
    return _truncated(mpc, r.share, 3 * f, f)
