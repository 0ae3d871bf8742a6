"""The batch path's fast pieces against their plain-Python definitions: the align
step's id order and digest, and the scores file."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
import pytest

from sharedml.components.align import sorted_ids
from sharedml.components.saved_models import scores_csv


@pytest.mark.parametrize("dtype", [object, "string", "string[pyarrow]"])
def test_sorted_ids_are_python_sorted_text(dtype: object) -> None:
    ids = pd.Series(["b", "a", "é", "Z", "10", "9", "ab", "Ω", "a b", "😀", "z"], dtype=dtype)
    order, digest = sorted_ids(ids)
    text = [str(i) for i in ids]
    want = sorted(range(len(text)), key=lambda i: text[i])  # code point order
    assert order.tolist() == want
    assert digest == hashlib.sha256("\n".join(text[i] for i in want).encode()).hexdigest()


def test_sorted_ids_of_integers_and_of_nothing() -> None:
    order, digest = sorted_ids(pd.Series([30, 4, 100]))
    assert order.tolist() == [2, 0, 1]  # as text: "100" < "30" < "4"
    assert digest == hashlib.sha256(b"100\n30\n4").hexdigest()
    order, digest = sorted_ids(pd.Series([], dtype=object))
    assert order.tolist() == [] and digest == hashlib.sha256(b"").hexdigest()
    assert sorted_ids(pd.Series(["", "x"]))[1] == hashlib.sha256(b"\nx").hexdigest()
    mixed = pd.Series([7, "x", 3.5], dtype=object)
    assert sorted_ids(mixed)[1] == hashlib.sha256(b"3.5\n7\nx").hexdigest()


def test_sorted_ids_of_a_slice_digest_only_its_own_ids() -> None:
    ids = pd.Series([f"id-{i:05d}" for i in range(2000)])[1500:200:-3]  # offsets not at 0
    order, digest = sorted_ids(ids)
    text = sorted(ids)
    assert [ids.iloc[i] for i in order] == text
    assert digest == hashlib.sha256("\n".join(text).encode()).hexdigest()


@pytest.mark.parametrize("ids", [[str(i) for i in range(13)], [f"a,{i}" for i in range(13)],
                                 [f'say "{i}"' for i in range(13)]])
def test_scores_csv_reads_back_as_pandas_writes_it(ids: list[str]) -> None:
    scores = np.array([0.5118216247002567, 5e-324, 1e-300, 1e20, 1e16, -0.0, 0.0, 1.0, 1e-5,
                       2.5e-7, 1 / 3, np.nextafter(1.0, 0.0), 123456789.123456789])
    out = pd.DataFrame({"id": ids, "score": scores})
    buf = io.StringIO()
    out.to_csv(buf, index=False)
    got = pd.read_csv(io.BytesIO(scores_csv(out)), dtype={"id": str})
    want = pd.read_csv(io.StringIO(buf.getvalue()), dtype={"id": str})
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    np.testing.assert_array_equal(got["score"].to_numpy(), scores)  # bit for bit
