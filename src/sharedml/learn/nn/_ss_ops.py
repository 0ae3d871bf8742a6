"""Dense layers on secret shares: the forward and backward passes of the
secret-shared MLP, written on the MPC engine's primitives.

Scales: a product of two shared reals carries 2f fractional bits until it is
truncated; the functions below say which scale they take and give.

* :func:`relu_layer` — ReLU of untruncated pre-activations ``a`` (2f bits):
  1. one batched comparison gives every ``[a > 0]`` in 32-bit lanes after
     each party drops the low f bits of its share
     (:func:`~sharedml.mpc.boolean.msb_bits`; exact for |a| < 2^(31-f),
     32768 at f = 16, except that ``[a > 0]`` may read 1 for
     -(n-1)·2^-f < a ≤ 0, where ReLU then passes a value within n - 1 ulps
     of 0 — as if a had been rounded up);
  2. one round multiplies the bits into ``a`` (:func:`~sharedml.mpc.boolean.bit_mul`);
  3. one truncation by f. The bits are kept: the backward pass multiplies
     them into the incoming gradient (ReLU's derivative).
* :func:`matmuls` — several independent Beaver matrix products in one round
  (the output layer's weight gradient and the error sent back share it);
  products of a batch's size use numpy's exact uint64 product (:func:`ring.product`).

Reveals nothing beyond the masked openings of the products, comparisons and
truncations (uniform; see :mod:`sharedml.mpc.beaver`). Semi-honest, as the
randomness provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sharedml.crypto import ring
from sharedml.errors import ConfigError
from sharedml.mpc import SharedTensor, rescale
from sharedml.mpc.boolean import BooleanTensor, bit_mul, msb_bits
from sharedml.mpc.material import Kind


def relu_layer(a_raw: SharedTensor) -> tuple[SharedTensor, BooleanTensor]:
    """``(relu(a), [a > 0])`` for untruncated ``a_raw`` (2f bits); ``relu(a)`` at f."""
    f = a_raw.mpc.frac_bits
    bits = msb_bits(-a_raw, 32, drop=f)
    return rescale(bit_mul(bits, a_raw)), bits


def relu_grad(bits: BooleanTensor, d_raw: SharedTensor) -> SharedTensor:
    """``[a > 0] ⊙ d`` for an untruncated gradient ``d_raw``; at f."""
    return rescale(bit_mul(bits, d_raw))


def matmuls(pairs: Sequence[tuple[SharedTensor, SharedTensor]]) -> list[SharedTensor]:
    """``x @ y`` for every 2-D pair, untruncated, all in one round."""
    mpc = pairs[0][0].mpc
    mats, masked = [], []
    for x, y in pairs:
        (m, k), n = x.shape, y.shape[1]
        mat = mpc.provider.request(Kind.MATMUL, (m, k, n))
        mats.append(mat)
        masked += [x.share - mat["a"], y.share - mat["b"]]
    opened = mpc.open_many("matmuls", masked)
    out = []
    for i, ((x, y), mat) in enumerate(zip(pairs, mats, strict=True)):
        d, e = opened[2 * i], opened[2 * i + 1]
        z = ring.product(d, mat["b"])
        z += ring.product(x.share, e)
        z += mat["c"]
        mat.release()
        out.append(SharedTensor(mpc, z, x.scale + y.scale))
    return out


def lifted_sum(d: SharedTensor, scale: int) -> SharedTensor:
    """Column sums of ``d`` (a bias gradient) brought to ``scale`` bits (local)."""
    total = d.sum(axis=0)
    return SharedTensor(d.mpc, total.share << np.uint64(scale - total.scale), scale)


@dataclass
class Forward:
    """What the backward pass needs of one forward pass."""

    inputs: list[SharedTensor]  # the input of every layer after the first
    bits: list[BooleanTensor]  # [a > 0] of every hidden layer


def forward(a1_raw: SharedTensor, params: Sequence[SharedTensor]) -> tuple[SharedTensor, Forward]:
    """The network's untruncated output (2f) from the first layer's untruncated
    pre-activations ``a1_raw``; ``params`` are ``[W1, W2, b2, W3, b3, ...]``
    (the first layer's bias lives in ``W1``, see the learner)."""
    cache = Forward([], [])
    h, bits = relu_layer(a1_raw)
    cache.bits.append(bits)
    rest = list(params[1:])
    for i in range(0, len(rest), 2):
        W, b = rest[i], rest[i + 1]
        cache.inputs.append(h)
        (a_raw,) = matmuls([(h, W)])
        a_raw = a_raw + b
        if i + 2 == len(rest):
            return a_raw, cache
        h, bits = relu_layer(a_raw)
        cache.bits.append(bits)
    raise ConfigError("an MLP needs a layer after the first", step="fit")


def backward(
    e: SharedTensor, params: Sequence[SharedTensor], cache: Forward
) -> tuple[list[SharedTensor], SharedTensor]:
    """Untruncated batch-summed gradients (2f) of ``params[1:]`` and the error
    at the first layer's pre-activations (at f), for the output error ``e`` (f)."""
    f2 = 2 * e.mpc.frac_bits
    rest = list(params[1:])
    grads: list[SharedTensor] = []
    d = e
    for layer in range(len(cache.inputs) - 1, -1, -1):
        W = rest[2 * layer]
        g_w, d_h = matmuls([(cache.inputs[layer].T, d), (d, W.T)])
        grads[:0] = [g_w, lifted_sum(d, f2)]
        d = relu_grad(cache.bits[layer], d_h)
    return grads, d


def send_each(values: dict[str, SharedTensor]) -> str:
    """First half of opening ``values[p]`` to party ``p`` only, for every ``p``:
    send this party's shares of the others' values (no wait). Returns the
    tag :func:`receive_each` takes; other steps may run in between, so the
    round overlaps theirs."""
    mpc = next(iter(values.values())).mpc
    tag = mpc.tag("reveal_each")
    for p, v in values.items():
        if p != mpc.party:
            mpc.channel.send(p, tag, np.ascontiguousarray(v.share))
    return tag


def receive_each(values: dict[str, SharedTensor], tag: str) -> np.ndarray | None:
    """Second half: this party's value (as floats), or None if it has none."""
    mpc = next(iter(values.values())).mpc
    mine = values.get(mpc.party)
    if mine is None:
        return None
    total = mine.share.copy()
    for p in mpc.others:
        total += mpc.recv_array(p, tag, mine.shape, "reveal_each")
    return ring.to_signed(total).astype(np.float64) / float(1 << mine.scale)


def softmax_rows(z: SharedTensor) -> SharedTensor:
    """Row-wise softmax of shared logits ``z`` (rows × K, at f), at f.

    1. ``m`` = each row's maximum (a tree of ⌈log2 K⌉ batched comparisons);
    2. ``e = exp(z - m)`` (:func:`~sharedml.mpc.nonlinear.exp`: inputs in
       [-16, 0], relative error 1e-3; a logit more than 16 below its row's
       maximum counts as 16 below, a probability under 1.2e-7 either way);
    3. ``s = Σ e`` per row lies in [1, K]: ``1 / s`` by
       :func:`~sharedml.mpc.nonlinear.reciprocal` (valid to 500 classes,
       relative error 1e-3), and ``p = e / s`` in one product.

    About 120 rounds for any number of rows. Reveals nothing beyond the masked
    openings of those steps.
    """
    from sharedml.mpc import functions, nonlinear

    n, k = z.shape
    m = functions.max(z, axis=1).reshape(n, 1)
    e = nonlinear.exp(z - m.broadcast_to((n, k)))
    r = nonlinear.reciprocal(e.sum(axis=1).reshape(n, 1))
    return e * r.broadcast_to((n, k))


def reveal_each(values: dict[str, SharedTensor]) -> np.ndarray | None:
    """Open ``values[p]`` to party ``p`` only, for every ``p``, in one round;
    returns this party's value (as floats), or None if it has none."""
    return receive_each(values, send_each(values))
