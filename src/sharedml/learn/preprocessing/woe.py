"""WOE and IV for vertical data: the label holder's labels stay encrypted.

Weight of evidence of bin ``k`` of a feature, with ``pos_k``/``neg_k`` the
positive/negative rows in the bin and ``P``/``N`` the totals::

    WOE_k = ln((pos_k / P) / (neg_k / N))
    IV    = Σ_k (pos_k / P − neg_k / N) · WOE_k

A zero count is replaced by ``adjustment`` (0.5, as FATE does) so every bin
has a finite WOE; an empty bin gets WOE 0 and adds nothing to IV. :func:`woe_iv` is the plaintext math both sides share.

Protocol (label holder L with labels ``y ∈ {0,1}``; feature holders F that
binned their own columns, rows aligned by PSI):

1. L makes a Paillier key pair and sends F the public key and
   ``Enc(y_i)`` for every row.
2. For each feature and bin ``k``, F multiplies the ciphertexts of the rows
   in the bin: ``Enc(pos_k) = Π_{i∈k} Enc(y_i)``, re-randomises each sum
   (L drew every ``Enc(y_i)``'s randomiser, so from a bare product it could
   tell which rows a small bin holds — for a one-row bin, the row) and sends
   L these sums with the bin sizes ``n_k``.
3. L decrypts ``pos_k``, sets ``neg_k = n_k − pos_k`` and computes WOE and
   IV; with ``reveal="both"`` it sends F the WOE and IV of F's features.

Reveals: L learns, for every bin of F's features, the bin size and its
positive and negative counts — never which rows fall in which bin. F learns
nothing (ciphertexts under L's key) unless it receives the WOE, from which
with its bin sizes it can recompute the per-bin positive counts. Semi-honest;
Paillier with 2048-bit moduli (DCR assumption). Reference: FATE
``HeteroFeatureBinning`` (Liu et al., "FATE: an industrial grade platform for
collaborative learning with data protection", JMLR 2021).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sharedml.crypto import paillier
from sharedml.errors import DataError, ProtocolAbort
from sharedml.session import Session

CHUNK = 2048
ADJUSTMENT = 0.5


@dataclass
class WoeResult:
    """One feature's per-bin WOE and its IV (counts only at the label holder)."""

    woe: np.ndarray
    iv: float
    pos: np.ndarray | None = None
    neg: np.ndarray | None = None


def woe_iv(pos: np.ndarray, neg: np.ndarray, adjustment: float = ADJUSTMENT) -> WoeResult:
    """Plaintext WOE per bin and IV from per-bin positive and negative counts."""
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    p_tot, n_tot = pos.sum(), neg.sum()
    if p_tot == 0 or n_tot == 0:
        raise DataError("WOE needs both positive and negative labels", step="woe")
    used = (pos + neg) > 0
    p = np.where(pos == 0, adjustment, pos) / p_tot
    n = np.where(neg == 0, adjustment, neg) / n_tot
    woe = np.where(used, np.log(p / n), 0.0)
    return WoeResult(woe, float(np.sum(np.where(used, (p - n) * woe, 0.0))), pos, neg)


def bin_counts(bins: np.ndarray, labels: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin positive and negative counts (plaintext, where labels and bins meet)."""
    pos = np.bincount(bins, weights=labels, minlength=n_bins)
    tot = np.bincount(bins, minlength=n_bins)
    return pos, tot - pos


def _send_cts(session: Session, to: str, tag: str, pk: paillier.PaillierPublicKey,
              cts: list) -> None:
    for start in range(0, max(len(cts), 1), CHUNK):
        session.channel.send(to, tag, pk.pack(cts[start : start + CHUNK]))


def _recv_cts(session: Session, frm: str, tag: str, pk: paillier.PaillierPublicKey,
              count: int) -> list:
    out: list = []
    for _ in range(max(1, -(-count // CHUNK))):
        out.extend(pk.unpack(session.channel.recv(frm, tag)))
    if len(out) != count:
        raise ProtocolAbort(f"expected {count} ciphertexts, got {len(out)}", party=frm, step="woe")
    return out


def vertical_woe(
    session: Session,
    label_holder: str,
    bins: Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
    *,
    reveal: str = "label_holder",
    key_bits: int = 2048,
) -> dict[str, dict[str, WoeResult]] | dict[str, WoeResult] | None:
    """Run the protocol (module docstring). ``bins`` maps this party's features to
    bin indices per aligned row. The label holder returns ``{party: {feature:
    WoeResult}}`` for every party; a feature holder returns its own results when
    ``reveal="both"``, else ``None``.
    """
    ch = session.channel
    if session.party == label_holder:
        if labels is None:
            raise DataError("the label holder must pass labels", party=session.party, step="woe")
        y = np.asarray(labels)
        if not np.isin(y, (0, 1)).all():
            raise DataError("WOE needs binary 0/1 labels", party=session.party, step="woe",
                            remedy="encode the label as 0/1")
        pk, sk = paillier.generate_keypair(key_bits)
        cts = pk.encrypt_many(int(v) for v in y)
        for p in session.others:
            ch.send(p, "woe/pk", pk.to_bytes())
            ch.send(p, "woe/n", np.array([len(y)], dtype=np.int64))
            _send_cts(session, p, "woe/labels", pk, cts)
        out: dict[str, dict[str, WoeResult]] = {session.party: {}}
        for feat, b in bins.items():
            b = np.asarray(b, dtype=np.int64)
            pos, neg = bin_counts(b, y, int(b.max(initial=0)) + 1)
            out[session.party][feat] = woe_iv(pos, neg)
        for p in session.others:
            meta = json.loads(bytes(ch.recv(p, "woe/meta")))
            sizes = np.asarray(ch.recv(p, "woe/sizes"), dtype=np.int64)
            sums = _recv_cts(session, p, "woe/sums", pk, int(sizes.size))
            pos_all = np.array(sk.decrypt_many(sums), dtype=np.float64)
            out[p] = {}
            at = 0
            for feat, nb in zip(meta["features"], meta["bins"], strict=True):
                pos = pos_all[at : at + nb]
                out[p][feat] = woe_iv(pos, sizes[at : at + nb] - pos)
                at += nb
            if reveal == "both":
                woes = np.concatenate([out[p][f].woe for f in meta["features"]] or [np.zeros(0)])
                ivs = np.array([out[p][f].iv for f in meta["features"]])
                ch.send(p, "woe/result", np.concatenate([woes, ivs]))
        return out
    pk = paillier.PaillierPublicKey.from_bytes(bytes(ch.recv(label_holder, "woe/pk")))
    n = int(np.asarray(ch.recv(label_holder, "woe/n"))[0])
    cts = _recv_cts(session, label_holder, "woe/labels", pk, n)
    feats, nbins, sums, counts = list(bins), [], [], []
    for feat in feats:
        b = np.asarray(bins[feat], dtype=np.int64)
        if len(b) != n:
            raise DataError(f"feature {feat!r} has {len(b)} rows, the labels {n}: not aligned",
                            party=session.party, step="woe", remedy="run psi first")
        nb = int(b.max(initial=0)) + 1
        nbins.append(nb)
        order = np.argsort(b, kind="stable")
        bounds = np.searchsorted(b[order], np.arange(nb + 1))
        for k in range(nb):
            # re-randomised: L made every Enc(y_i), so a bare product would tell it the rows
            sums.append(pk.rerandomize(pk.sum(cts[i] for i in order[bounds[k] : bounds[k + 1]])))
            counts.append(bounds[k + 1] - bounds[k])
    ch.send(label_holder, "woe/meta", json.dumps({"features": feats, "bins": nbins}).encode())
    ch.send(label_holder, "woe/sizes", np.array(counts, dtype=np.int64))
    _send_cts(session, label_holder, "woe/sums", pk, sums)
    if reveal != "both":
        return None
    res = np.asarray(ch.recv(label_holder, "woe/result"), dtype=np.float64)
    mine: dict[str, WoeResult] = {}
    at = 0
    for i, (feat, nb) in enumerate(zip(feats, nbins, strict=True)):
        mine[feat] = WoeResult(res[at : at + nb], float(res[sum(nbins) + i]))
        at += nb
    return mine
