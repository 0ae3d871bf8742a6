"""Vertical WOE/IV with Paillier-encrypted labels equals the plaintext computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sharedml.crypto.paillier import PaillierPublicKey
from sharedml.learn.preprocessing import apply_bins, bin_edges, vertical_woe
from sharedml.standalone import run_in_threads
from sharedml.transport.recording import RecordingChannel, WireRecord


def _plain_woe(bins: pd.Series, y: pd.Series) -> tuple[np.ndarray, float, np.ndarray]:
    """WOE of the non-empty bins, IV, and which bins those are, written out with pandas."""
    table = pd.crosstab(bins, y).reindex(columns=[0, 1], fill_value=0)
    pos = table[1].to_numpy(float)
    neg = table[0].to_numpy(float)
    p = np.where(pos == 0, 0.5, pos) / pos.sum()
    n = np.where(neg == 0, 0.5, neg) / neg.sum()
    woe = np.log(p / n)
    return woe, float(((p - n) * woe).sum()), table.index.to_numpy()


@pytest.mark.slow
def test_woe_iv_on_default_credit_equals_plaintext(shared_data: Path) -> None:
    guest = pd.read_csv(shared_data / "default_credit_hetero_guest.csv").sample(
        frac=0.8, random_state=1)
    host = pd.read_csv(shared_data / "default_credit_hetero_host.csv").sample(
        frac=0.8, random_state=2)
    # Rows aligned as PSI leaves them (tests/psi checks PSI equals this inner join).
    joined_ids = guest.merge(host[["id"]], on="id")["id"]
    frames = {
        "guest": guest.set_index("id").loc[joined_ids].reset_index(),
        "host": host.set_index("id").loc[joined_ids].reset_index(),
    }
    features = ["x0", "x1", "x2", "x5"]
    log: list[WireRecord] = []

    def fn(s):
        aligned = frames[s.party]
        if s.party == "guest":
            bins = {"x0": apply_bins(aligned["x0"], bin_edges(aligned["x0"], 5))}
            return vertical_woe(s, "guest", bins, aligned["y"].to_numpy(), reveal="both"), aligned
        bins = {f: apply_bins(aligned[f], bin_edges(aligned[f], 10)) for f in features}
        return vertical_woe(s, "guest", bins, reveal="both"), aligned

    out = run_in_threads(fn, ["guest", "host"], wrap=lambda c: RecordingChannel(c, log))
    (res_g, aligned_g), (res_h, aligned_h) = out["guest"], out["host"]
    joined = aligned_g.merge(aligned_h, on="id", suffixes=("_g", "_h"))
    assert len(joined) == len(aligned_g)
    for f in features:
        col = joined[f"{f}_h"]
        woe, iv, present = _plain_woe(pd.Series(apply_bins(col, bin_edges(col, 10))), joined["y"])
        assert np.allclose(res_g["host"][f].woe[present], woe, atol=1e-6)
        assert abs(res_g["host"][f].iv - iv) < 1e-6
        assert np.allclose(res_h[f].woe[present], woe, atol=1e-6)
        assert abs(res_h[f].iv - iv) < 1e-6
    _, iv, _ = _plain_woe(pd.Series(apply_bins(joined["x0_g"], bin_edges(joined["x0_g"], 5))),
                          joined["y"])
    assert abs(res_g["guest"]["x0"].iv - iv) < 1e-6
    # The labels cross only as Paillier ciphertexts: 256-byte blocks, none a small integer.
    labels = [r for r in log if r.tag == "woe/labels"]
    assert labels and all(r.frm == "guest" and r.value.size % 512 == 0 for r in labels)
    assert sum(r.value.size for r in labels) == 512 * len(aligned_g)
    assert not any(r.tag.startswith("woe/") and r.frm == "guest" and r.value is not None
                   and isinstance(r.value, np.ndarray) and r.value.dtype != np.uint8
                   and r.tag not in ("woe/n", "woe/result") for r in log)


def test_label_holder_cannot_match_a_bin_sum_to_its_rows() -> None:
    """9.4-3: the label holder made every ``Enc(y_i)`` and so knows every randomiser;
    a bin's sum that were the bare product of its rows' ciphertexts would tell it
    which rows the bin holds (for a one-row bin, the row itself). Each sum the
    feature holder returns is re-randomised, so it equals no product of the
    ciphertexts the label holder sent."""
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    feature = np.array([0, 1, 1, 2, 2, 2, 3, 3])  # bin 0 holds one row
    log: list[WireRecord] = []

    def fn(s):
        if s.party == "bank":
            return vertical_woe(s, "bank", {}, y, key_bits=1024)
        return vertical_woe(s, "bank", {"f": feature}, key_bits=1024)

    out = run_in_threads(fn, ["bank", "shop"], wrap=lambda c: RecordingChannel(c, log))
    pos, neg = out["bank"]["shop"]["f"].pos, out["bank"]["shop"]["f"].neg
    assert pos.tolist() == [1, 1, 1, 1] and neg.tolist() == [0, 1, 2, 1]

    def blocks(tag: str) -> list[int]:
        raw = b"".join(r.as_bytes() for r in log if r.tag.endswith(tag))
        size = len(raw) // {"woe/labels": len(y), "woe/sums": 4}[tag]
        return [int.from_bytes(raw[i : i + size], "big") for i in range(0, len(raw), size)]

    sent, sums = blocks("woe/labels"), blocks("woe/sums")
    pk = PaillierPublicKey.from_bytes(next(r.as_bytes() for r in log if r.tag.endswith("woe/pk")))
    n_sq = int(pk.n_sq)
    for k, got in enumerate(sums):
        rows = np.flatnonzero(feature == k)
        bare = 1
        for i in rows:
            bare = bare * sent[i] % n_sq
        assert got != bare, f"bin {k}'s sum is the bare product of rows {rows.tolist()}"
