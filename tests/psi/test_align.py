"""Sample alignment on default_credit and feature agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sharedml.errors import DataError
from sharedml.psi import align_rows
from sharedml.psi.features import agree_horizontal, agree_vertical
from sharedml.standalone import PartyFailed, run_in_threads


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["kkrt", "ecdh"])
def test_default_credit_aligned_equals_inner_join(shared_data: Path, protocol: str) -> None:
    guest = pd.read_csv(shared_data / "default_credit_hetero_guest.csv")
    host = pd.read_csv(shared_data / "default_credit_hetero_host.csv")
    guest = guest.sample(frac=0.8, random_state=1).reset_index(drop=True)
    host = host.sample(frac=0.8, random_state=2).reset_index(drop=True)
    frames = {"guest": guest, "host": host}
    out = run_in_threads(
        lambda s: align_rows(s, frames[s.party], ["id"], protocol=protocol)[0], ["guest", "host"]
    )
    g, h = out["guest"], out["host"]
    assert g["id"].tolist() == h["id"].tolist()
    joined = g.merge(h, on="id", suffixes=("_g", "_h"))
    expected = guest.merge(host, on="id", suffixes=("_g", "_h"))
    assert len(expected) == len(joined) == len(g)
    pd.testing.assert_frame_equal(
        joined.sort_values("id").reset_index(drop=True),
        expected.sort_values("id").reset_index(drop=True),
    )
    assert 0.6 < len(g) / 30000 < 0.68  # ~64% as the data README says


def test_aligned_order_is_the_same_in_every_run() -> None:
    # Fresh blinding keys each run must not change the row order, or a seeded
    # split downstream would pick different rows every time.
    rng = np.random.default_rng(3)
    ids = [f"u{i}" for i in rng.choice(10_000, size=600, replace=False)]
    frames = {
        "A": pd.DataFrame({"id": ids[:450], "a": np.arange(450)}).sample(frac=1, random_state=1),
        "B": pd.DataFrame({"id": ids[150:], "b": np.arange(450)}).sample(frac=1, random_state=2),
    }

    def aligned_ids() -> dict[str, list[str]]:
        out = run_in_threads(lambda s: align_rows(s, frames[s.party], ["id"])[0], ["A", "B"])
        return {p: f["id"].tolist() for p, f in out.items()}

    first, second = aligned_ids(), aligned_ids()
    assert first["A"] == first["B"] == second["A"] == second["B"]
    assert sorted(first["A"]) == sorted(ids[150:450])


def test_alignment_rejects_duplicate_ids() -> None:
    frames = {"A": pd.DataFrame({"id": ["a", "b", " a"]}), "B": pd.DataFrame({"id": ["a"]})}
    with pytest.raises(PartyFailed) as info:
        run_in_threads(lambda s: align_rows(s, frames[s.party], ["id"]), ["A", "B"])
    assert isinstance(info.value.error, DataError)
    assert "rows 0, 2" in str(info.value.error)


def test_horizontal_schema_fingerprint() -> None:
    cols = {"age": "int", "income": "float"}
    out = run_in_threads(lambda s: agree_horizontal(s, cols), ["A", "B", "C"])
    assert len(set(out.values())) == 1
    other = {"A": cols, "B": {"age": "float", "income": "float", "city": "category"}}
    with pytest.raises(PartyFailed) as info:
        run_in_threads(lambda s: agree_horizontal(s, other[s.party]), ["A", "B"])
    msg = str(info.value.error)
    assert isinstance(info.value.error, DataError)
    assert "city" in msg and "age" in msg


def test_vertical_layout() -> None:
    feats = {"bank": (["x0", "x1"], "y"), "shop": (["x0"], None)}
    out = run_in_threads(lambda s: agree_vertical(s, *feats[s.party]), ["bank", "shop"])
    layout = out["shop"]
    assert layout.label_holder == "bank"
    assert layout.features == {"bank": ["bank.x0", "bank.x1"], "shop": ["shop.x0"]}
    assert len(set(layout.all_features)) == 3  # disjoint although both have "x0"
    two = {"bank": (["x0"], "y"), "shop": (["x1"], "y")}
    with pytest.raises(PartyFailed):
        run_in_threads(lambda s: agree_vertical(s, *two[s.party]), ["bank", "shop"])
