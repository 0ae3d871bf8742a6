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
