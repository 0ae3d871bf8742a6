"""Bucketed PSI on a local Ray cluster: the single-process result, bucket for bucket (8.5-2).

Each party's node runs in a thread of this process (LocalChannel between the
nodes); its lanes are Ray actors that reach the peer's lanes over gRPC with
mutual TLS under the parties' certificates — real processes, real sockets.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sharedml.crypto import pki
from sharedml.errors import ChannelError, ComputeError, ConfigError
from sharedml.psi import align_rows, digest_keys, psi_digests
from sharedml.scale.buckets import capacity
from sharedml.scale.config import RayConfig
from sharedml.scale.lane import PsiLane
from sharedml.scale.runtime import RayCompute
from sharedml.session import Session
from sharedml.standalone import PartyFailed, run_in_threads
from sharedml.transport.recording import RecordingChannel, WireRecord

#: make test-parallel: every Ray test on one xdist worker, beside the one cluster
pytestmark = pytest.mark.xdist_group("ray")

PARTIES = ("alice", "bob")  # as in conftest.py

ALICE = [f"cust-{i:05d}" for i in range(0, 1500)]
BOB = [f"cust-{i:05d}" for i in range(900, 2100)]  # 600 in common


def _frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    out = {}
    for party, ids in zip(PARTIES, (ALICE, BOB), strict=True):
        order = rng.permutation(len(ids))
        out[party] = pd.DataFrame({"id": np.array(ids)[order], f"x_{party}": rng.normal(size=len(ids))})
    return out


def _with_ray(session: Session, pki_dir: Path, record: list[WireRecord] | None = None,
              **config: Any) -> Session:
    cfg = RayConfig(address="auto", cpus_per_worker=0.5, **{"workers": 2, "bucket_rows": 256, **config})
    compute = RayCompute(cfg, party=session.party,
                         identity=pki.load_identity(pki_dir, session.party), record=record)
    return dataclasses.replace(session, compute=compute)


def _align(frames: dict[str, pd.DataFrame], pki_dir: Path | None, receivers: list[str] | None = None,
           **config: Any) -> dict[str, Any]:
    def party(session: Session) -> Any:
        if pki_dir is not None:
            session = _with_ray(session, pki_dir, **config)
        return align_rows(session, frames[session.party], ["id"], receivers=receivers,
                          protocol="kkrt")

    return run_in_threads(party, list(PARTIES))


def test_aligned_rows_equal_the_single_process_run(ray_cluster: Any, pki_dir: Path) -> None:
    frames = _frames()
    single = _align(frames, None)
    scaled = _align(frames, pki_dir)
    for p in PARTIES:
        pd.testing.assert_frame_equal(scaled[p][0], single[p][0])
        assert scaled[p][1].set_sizes == single[p][1].set_sizes == {"alice": 1500, "bob": 1200}
    # row r is the same customer at both parties, and the set is the true intersection
    assert list(scaled["alice"][0]["id"]) == list(scaled["bob"][0]["id"])
    assert set(scaled["alice"][0]["id"]) == set(ALICE) & set(BOB)


def test_one_lane_and_uneven_lanes_give_the_same_rows(ray_cluster: Any, pki_dir: Path) -> None:
    frames = _frames()
    one = _align(frames, pki_dir, workers=1, bucket_rows=700)
    two = _align(frames, pki_dir, workers=2, bucket_rows=300)
    for p in PARTIES:
        pd.testing.assert_frame_equal(one[p][0], two[p][0])


def test_a_second_run_takes_the_warm_lanes(ray_cluster: Any, pki_dir: Path) -> None:
    """Lanes outlive a run that ended well: the next run of the party starts none."""
    frames = _frames()
    computes: dict[str, RayCompute] = {}

    def party(session: Session) -> Any:
        session = _with_ray(session, pki_dir)
        assert session.compute is not None
        computes[session.party] = session.compute
        return align_rows(session, frames[session.party], ["id"], protocol="kkrt")

    first = run_in_threads(party, list(PARTIES))
    second = run_in_threads(party, list(PARTIES))
    assert {p: c.actors_started for p, c in computes.items()} == {"alice": 0, "bob": 0}
    assert {len(c.usage) for c in computes.values()} == {2}  # both lanes worked, still there
    for p in PARTIES:
        pd.testing.assert_frame_equal(second[p][0], first[p][0])


def test_a_non_receiver_gets_no_rows(ray_cluster: Any, pki_dir: Path) -> None:
    out = _align(_frames(), pki_dir, receivers=["alice"])
    assert out["bob"][0] is None
    assert set(out["alice"][0]["id"]) == set(ALICE) & set(BOB)


def test_lanes_send_no_id_and_buckets_are_padded(ray_cluster: Any, pki_dir: Path) -> None:
    """9.4-3, 9.4-8: neither the node channel nor any lane carries a digest of an id;
    every bucket a lane announces has the public capacity, not its true size."""
    digests = {"alice": digest_keys(ALICE), "bob": digest_keys(BOB)}
    lanes: list[WireRecord] = []
    nodes: list[WireRecord] = []

    def party(session: Session) -> Any:
        session = _with_ray(session, pki_dir, record=lanes)
        return psi_digests(session, digests[session.party], protocol="kkrt")

    out = run_in_threads(party, list(PARTIES), wrap=lambda ch: RecordingChannel(ch, nodes))
    assert set(ALICE[i] for i in out["alice"].rows) == set(ALICE) & set(BOB)
    assert {r.frm for r in lanes} == set(PARTIES)
    for party_ in PARTIES:
        other = next(p for p in PARTIES if p != party_)
        blob = b"".join(r.as_bytes() for r in lanes + nodes if r.to == other)
        for d in digests[party_][:200]:
            assert d.tobytes()[:16] not in blob
        assert all(i.encode() not in blob for i in (ALICE if party_ == "alice" else BOB)[:200])
    # KKRT's receiver (alice) learns the sender's bucket sizes from its PRF tables: each
    # table has bob's public capacity of rows, never the bucket's true count.
    buckets = -(-1500 // 256)
    rows = sum(len(r.value) for r in lanes if r.frm == "bob" and r.tag.endswith("kkrt/table"))
    assert rows == buckets * capacity(1200, buckets)


def test_one_party_bucketed_the_other_not_is_refused(ray_cluster: Any, pki_dir: Path) -> None:
    digests = {"alice": digest_keys(ALICE), "bob": digest_keys(BOB)}

    def party(session: Session) -> Any:
        if session.party == "alice":
            session = _with_ray(session, pki_dir)
        return psi_digests(session, digests[session.party], protocol="kkrt")

    with pytest.raises(PartyFailed) as err:
        run_in_threads(party, list(PARTIES))
    assert isinstance(err.value.error, ConfigError)
    assert "compute: ray" in str(err.value)


class _DyingLane(PsiLane):
    """A lane whose process dies in the middle of bucket 1 (a killed Ray worker)."""

    def run(self, job: str, *args: Any) -> Any:
        if job.endswith("/1") and self.party == "alice":
            import os

            os._exit(1)
        return super().run(job, *args)


def test_a_lane_killed_mid_psi_fails_the_step_clearly(ray_cluster: Any, pki_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import sharedml.scale.psi as bucketed

    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(bucketed, "PsiLane", _DyingLane)
    digests = {"alice": digest_keys(ALICE), "bob": digest_keys(BOB)}

    def party(session: Session) -> Any:
        return psi_digests(_with_ray(session, pki_dir), digests[session.party], protocol="kkrt")

    with pytest.raises(PartyFailed) as err:
        run_in_threads(party, list(PARTIES), timeout=20.0)
    failed = err.value.error
    assert isinstance(failed, (ComputeError, ChannelError)), failed
    if isinstance(failed, ComputeError):  # alice's own lane died: her node names it
        # lane 1 runs buckets 1 and 3; whichever of its results Ray reports first
        assert re.search(r"bucket [13] \(lane 1\): the Ray worker running it was lost", str(failed))
        assert failed.party == "alice" and failed.step == "psi/bucketed"
