"""Vertical logistic regression with the label holder's Paillier key (no third party).

Protocol, per mini-batch ``I`` (label holder ``L`` with ``X_L, y`` and the
Paillier key pair; feature holders ``F_k`` with ``X_k``; every party keeps its
own coefficients ``w`` in plaintext):

0. Setup: ``L`` makes a key pair and sends the public key and a public shuffle
   seed to every ``F_k``. All parties check their input (pre-flight).
1. Each ``F_k`` computes its partial score ``u_k = X_k[I] w_k``; the feature
   holders' sum ``sum_k u_k`` reaches ``L`` through a masked sum
   (:func:`~sharedml.learn.linear._base.masked_sum_to_label`).
2. ``L`` computes ``z = X_L[I] w_L + b + sum_k u_k``, the exact residual
   ``d = sigmoid(z) - y[I]``, updates its own ``w_L, b``, and sends
   ``Enc(round(d * 2^p))`` to every ``F_k``.
3. ``F_k`` computes ``Enc(X_k[I]^T d)`` homomorphically (one multi-exponentiation
   per column), adds a fresh statistical mask ``r`` (40 bits beyond the
   value's range), re-randomises, and sends it to ``L``.
4. ``L`` decrypts ``X_k^T d + r`` (one decryption per feature of ``F_k``) and
   returns it; ``F_k`` removes ``r`` and takes its gradient step.

Reveals: to ``L``, the feature holders' summed partial score ``sum_k u_k`` of
every training row once per epoch (with one feature holder, that party's own
partial score ``X_k w_k``) — the price of an exact sigmoid without a third
party; over many epochs these are linear projections of the feature holders'
rows, so keep epochs few and do not use this protocol where that is too much
(use :class:`~sharedml.learn.linear.SSLogisticRegression`). To ``F_k``, its own
batch gradient ``X_k[I]^T d / |I|``: ``d_k`` sums over the batch's rows, never
a single row's residual. Were a batch no larger than ``d_k``, ``F_k`` could
solve for the residuals (and their signs are the labels), so ``fit`` refuses
batches smaller than twice the widest feature holder's column count. The
coefficients never leave their owner.

Security model: semi-honest; two-party or more, no party may collude with
``L`` against ``F_k``'s partial scores beyond what is stated. Paillier with a
2048-bit modulus (DCR assumption). Decryptions: one per feature-holder feature
per batch; encryptions: one per training row per epoch.

Reference: Hardy et al., "Private federated learning on vertically partitioned
data via entity resolution and additively homomorphic encryption" (2017),
without the coordinator; Yang et al., "Parallel distributed logistic regression
for vertical federated learning without third-party coordinator" (2019).
"""

from __future__ import annotations

import secrets
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np

from sharedml.crypto.paillier import PaillierPrivateKey, PaillierPublicKey, generate_keypair
from sharedml.errors import ConfigError, ProtocolAbort
from sharedml.learn.linear._base import send_all
from sharedml.learn.linear._paillier_ops import (
    bytes_to_signed,
    multiexp,
    quantize_columns,
    signed_to_bytes,
)
from sharedml.learn.linear._sgd import SGD_PARAMS, PlaintextWeightsSGD
from sharedml.learn.params import MAX_KEY_BITS, Param, with_defaults
from sharedml.session import Session

#: statistical hiding of the gradient masks, in bits
MASK_SECURITY = 40
_WORD = 64


class HELogisticRegression(PlaintextWeightsSGD):
    """Vertical logistic regression over Paillier (see the module docstring).

    Parameters: declared in :attr:`params` — the SGD ones
    (:data:`~sharedml.learn.linear._sgd.SGD_PARAMS`, three epochs by default)
    and the Paillier key's and encodings' sizes.
    """

    model_type = "HELogisticRegression"
    task = "classification"
    params: ClassVar[dict[str, Param]] = {
        **with_defaults(SGD_PARAMS, epochs=3),
        "key_bits": Param(int, 2048, "Paillier modulus bits", low=1024, high=MAX_KEY_BITS),
        "residual_bits": Param(int, 20, "fixed-point bits of the encrypted residual", low=1,
                               job=False),
        "feature_bits": Param(int, 10, "fixed-point bits of the features in the homomorphic "
                              "product", low=1, job=False),
    }

    key_bits: int
    residual_bits: int
    feature_bits: int

    # -- protocol ------------------------------------------------------------------
    def _setup(self, session: Session) -> None:
        widest = max((self.layout_.n_features[p] for p in self.layout_.feature_holders), default=0)
        smallest = min(self.batch_size, self.layout_.n_rows)
        if smallest < 2 * widest:
            raise ConfigError(
                f"HE-LR batches of {smallest} rows are too small for a feature holder with "
                f"{widest} columns: its gradients would reveal the residuals",
                party=session.party,
                step="fit",
                remedy=f"use batch_size >= {2 * widest} (and at least that many rows)",
            )
        ch = session.channel
        if session.party == self.layout_.label_holder:
            pk, sk = generate_keypair(self.key_bits)
            self._pk: PaillierPublicKey = pk
            self._sk: PaillierPrivateKey | None = sk
            send_all(session, self.parties_, "helr/public-key", pk.to_bytes())
            # Encryptions of zero for the next batch are made in the background
            # while the feature holders compute; Enc(m) = Enc(0) * (1 + m n).
            self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(1, "helr-zeros")
            n = self.layout_.n_rows
            first = -(-n // max(1, n // self.batch_size))  # the largest batch's rows
            self._zeros: Future[list[Any]] | None = self._pool.submit(pk.encrypt_many, [0] * first)
        else:
            self._pk = PaillierPublicKey.from_bytes(
                bytes(ch.recv(self.layout_.label_holder, "helr/public-key"))
            )
            self._sk = None
        self._width = (self._pk.n.bit_length() + 7) // 8 + 1

    def _teardown(self) -> None:
        self._sk = None
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._zeros = None, None

    def _encrypt(self, values: list[int]) -> list[Any]:
        """Encrypt with zeros made ahead (fresh ones inline if too few), then
        start making the next batch's zeros."""
        pk = self._pk
        zeros = self._zeros.result() if self._zeros is not None else []
        if len(zeros) < len(values):
            zeros = zeros + pk.encrypt_many([0] * (len(values) - len(zeros)))
        out = [pk.add_plain(z, m) for z, m in zip(zeros, values, strict=False)]
        if self._pool is not None:
            # batches of an epoch differ by at most one row
            self._zeros = self._pool.submit(pk.encrypt_many, [0] * (len(values) + 1))
        return out

    def _label_gradient_exchange(self, session: Session, Xb: np.ndarray, resid: np.ndarray) -> None:
        """Steps 2-4 at the label holder: encrypt residuals, decrypt masked gradients."""
        pk, sk = self._pk, self._sk
        if sk is None:
            raise ProtocolAbort("label holder lost its key", party=session.party)
        q = np.round(resid * (1 << self.residual_bits)).astype(np.int64)
        cts = pk.pack(self._encrypt(q.tolist()))
        for p in self.layout_.feature_holders:
            session.channel.send(p, "helr/enc-residual", cts)
        for p in self.layout_.feature_holders:
            masked = pk.unpack(session.channel.recv(p, "helr/masked-gradient"))
            if len(masked) != self.layout_.n_features[p]:
                raise ProtocolAbort(
                    f"expected {self.layout_.n_features[p]} masked gradients from {p!r}",
                    party=session.party,
                )
            plain = sk.decrypt_many(masked, signed=True)
            session.channel.send(p, "helr/unmasked", signed_to_bytes(plain, self._width))

    def _feature_gradient(self, session: Session, Xb: np.ndarray) -> np.ndarray:
        """Steps 3-4 at a feature holder: ``X^T d`` for its own columns."""
        pk, ch, lh = self._pk, session.channel, self.layout_.label_holder
        enc = pk.unpack(ch.recv(lh, "helr/enc-residual"))
        if len(enc) != Xb.shape[0]:
            raise ProtocolAbort(
                f"expected {Xb.shape[0]} encrypted residuals, got {len(enc)}", party=session.party
            )
        q, offset = quantize_columns(Xb, self.feature_bits)
        enc_sum = pk.sum(enc)
        masks: list[int] = []
        out = []
        bound_bits = (
            self.residual_bits + int(np.abs(q).max()).bit_length() + Xb.shape[0].bit_length() + 2
        )
        for j in range(Xb.shape[1]):
            c = multiexp(enc, q[:, j], pk.n_sq)
            off = int(offset[j])
            if off:
                term = pk.mul_plain(enc_sum, abs(off))
                c = pk.add(c, term if off > 0 else _invert(term, pk))
            r = secrets.randbits(bound_bits + MASK_SECURITY)
            masks.append(r)
            out.append(pk.rerandomize(pk.add_plain(c, r)))
        ch.send(lh, "helr/masked-gradient", pk.pack(out))
        plain = bytes_to_signed(ch.recv(lh, "helr/unmasked"), self._width)
        if len(plain) != Xb.shape[1]:
            raise ProtocolAbort("wrong number of unmasked gradients", party=session.party)
        scale = float(1 << (self.residual_bits + self.feature_bits))
        return np.array([(v - r) / scale for v, r in zip(plain, masks, strict=True)])


def _invert(c: Any, pk: PaillierPublicKey) -> Any:
    import gmpy2

    return gmpy2.invert(c, pk.n_sq)
