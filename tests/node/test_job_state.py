"""A node's state between steps, sealed to its own disk (8.3-5): read back only as written."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd

from sharedml.node.job_state import JobState, JobStateFiles


def _state() -> JobState:
    frame = pd.DataFrame({"id": ["a", "b"], "x": [1.5, -2.0]})
    return JobState({"train": frame, "weights": np.arange(3.0)}, {"psi", "split"})


def test_a_saved_state_comes_back_in_a_new_process_object(tmp_path: Path) -> None:
    JobStateFiles(tmp_path).save("job-1", _state())
    back = JobStateFiles(tmp_path).load("job-1")  # as a restarted agent would
    assert back is not None and back.done == {"psi", "split"}
    pd.testing.assert_frame_equal(back.state["train"], _state().state["train"])
    np.testing.assert_array_equal(back.state["weights"], [0.0, 1.0, 2.0])
    assert (tmp_path / "state.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "jobs" / "job-1" / "state.bin").stat().st_mode & 0o777 == 0o600


def test_the_file_holds_no_value_in_clear(tmp_path: Path) -> None:
    state = JobState({"secret": "customer-4711-income"}, {"psi"})
    JobStateFiles(tmp_path).save("job-1", state)
    assert b"customer-4711" not in (tmp_path / "jobs" / "job-1" / "state.bin").read_bytes()


def test_a_file_this_node_did_not_seal_is_refused_before_unpickling(tmp_path: Path) -> None:
    files = JobStateFiles(tmp_path)
    files.save("job-1", _state())
    path = files.path("job-1")
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    assert files.load("job-1") is None
    # a file of another work dir (another key), or of another job, is refused too
    other = JobStateFiles(tmp_path / "other")
    other.save("job-1", _state())
    files.path("job-1").write_bytes(other.path("job-1").read_bytes())
    assert files.load("job-1") is None
    files.save("job-2", _state())
    files.path("job-3").parent.mkdir(parents=True)
    files.path("job-3").write_bytes(files.path("job-2").read_bytes())
    assert files.load("job-3") is None


def test_unknown_jobs_and_forgotten_ones_have_no_state(tmp_path: Path) -> None:
    files = JobStateFiles(tmp_path)
    assert files.load("never") is None
    files.save("job-1", _state())
    files.forget("job-1")
    assert files.load("job-1") is None


def test_a_state_that_does_not_serialise_is_not_saved(tmp_path: Path) -> None:
    files = JobStateFiles(tmp_path)
    assert files.save("job-1", JobState({"lock": threading.Lock()}, {"psi"})) is False
    assert files.load("job-1") is None


def test_a_secret_shared_model_part_is_saved_as_its_model_file_and_predicts_alike(
    tmp_path: Path,
) -> None:
    """SS-LR holds its MPC runtime (a channel, locks): the state keeps it as its model
    file, and the model read back scores the rows as the one in memory did."""
    from sharedml.learn.linear import SSLogisticRegression
    from sharedml.mpc import serve_dealer
    from sharedml.standalone import run_in_threads

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 5))
    y = (X @ [1.0, -2.0, 0.5, 0.0, 1.5] + rng.normal(size=300) > 0).astype(int)
    blocks = {"bank": X[:, :3], "shop": X[:, 3:]}
    fitted: dict[str, SSLogisticRegression] = {}

    def fit(session: object) -> object:
        me = session.party  # type: ignore[attr-defined]
        model = SSLogisticRegression(epochs=2, batch_size=64, random_state=1,
                                     reveal_weights="none")
        model.fit(session, blocks[me], y if me == "bank" else None)  # type: ignore[arg-type]
        fitted[me] = model
        return model.predict(session, blocks[me])  # type: ignore[arg-type]

    def deal(session: object, runs: int = 2) -> None:  # fit and predict: two runtimes
        for _ in range(runs):
            serve_dealer(session)  # type: ignore[arg-type]

    names = ["bank", "shop", "dealer"]
    before = run_in_threads({"bank": fit, "shop": fit, "dealer": deal}, names, dealer="dealer")
    loaded = {}
    for party, model in fitted.items():
        files = JobStateFiles(tmp_path / party)
        assert files.save("job-1", JobState({"model": model}, {"train"}))
        back = files.load("job-1")
        assert back is not None
        loaded[party] = back.state["model"]
        assert type(loaded[party]) is SSLogisticRegression

    def predict(session: object) -> object:
        me = session.party  # type: ignore[attr-defined]
        return loaded[me].predict(session, blocks[me])  # type: ignore[arg-type]

    after = run_in_threads({"bank": predict, "shop": predict,
                            "dealer": lambda session: deal(session, 1)}, names, dealer="dealer")
    # each joint prediction truncates with fresh randomness: a few units of the last
    # fixed-point bit apart (measured ~3e-6), never more than 1e-4
    np.testing.assert_allclose(after["bank"], before["bank"], atol=1e-4)
    assert after["shop"] is None
