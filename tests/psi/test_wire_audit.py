"""Wire audit of ECDH-PSI: what each party sees of the other's ids (9.4-3)."""

from __future__ import annotations

import numpy as np

from sharedml.psi import digest_keys, psi_digests
from sharedml.psi.curve import hash_to_u
from sharedml.psi.ecdh import TAG_BYTES
from sharedml.standalone import run_in_threads
from sharedml.transport.recording import RecordingChannel, WireRecord

A_IDS = [f"alice-{i}" for i in range(300)]
B_IDS = [f"alice-{i}" for i in range(150, 400)]


def _audit(receivers: list[str]) -> tuple[dict[str, object], list[WireRecord]]:
    log: list[WireRecord] = []
    digests = {"A": digest_keys(A_IDS), "B": digest_keys(B_IDS)}
    out = run_in_threads(
        lambda s: psi_digests(
            s, digests[s.party], receivers=receivers, batch=64, protocol="ecdh"
        ),
        ["A", "B"],
        wrap=lambda ch: RecordingChannel(ch, log),
    )
    return out, log


def _chunks(records: list[WireRecord], width: int = 32) -> set[bytes]:
    out = set()
    for r in records:
        raw = r.as_bytes()
        out.update(raw[i : i + width] for i in range(0, len(raw) - width + 1, width))
    return out


def test_peer_sees_ids_only_as_blinded_points() -> None:
    _, log = _audit(["A"])
    to_b = [r for r in log if r.to == "B"]
    digests = digest_keys(A_IDS)
    unblinded = {hash_to_u(d.tobytes()) for d in digests}
    raw_ids = {s.encode().ljust(32, b"\0")[:32] for s in A_IDS}
    seen = _chunks(to_b)
    assert not seen & unblinded
    assert not seen & {d.tobytes() for d in digests}
    assert not seen & raw_ids
    blob = b"".join(r.as_bytes() for r in to_b)
    assert all(s.encode() not in blob for s in A_IDS)
    # B receives A's set only as one point per distinct id: the size, nothing more.
    points = [r for r in to_b if r.tag == "ring/A"]
    assert sum(len(r.value) for r in points) == len(A_IDS)
    assert all(r.value.shape[1:] == (32,) for r in points)


def test_receiver_learns_exactly_the_intersection_other_learns_sizes() -> None:
    out, log = _audit(["A"])
    assert set(A_IDS[i] for i in out["A"].rows) == set(A_IDS) & set(B_IDS)
    assert out["B"].rows is None and out["B"].set_sizes == {"A": 300, "B": 250}
    # B (not a receiver) gets parameters, sizes and A's set blinded once; no tags.
    assert {r.tag.split("/")[0] for r in log if r.to == "B"} == {"params", "size", "ring"}
    # A gets B's tags sorted (no row positions) and exactly one per distinct id of B.
    tags = [r.value for r in log if r.to == "A" and r.tag == "tags"]
    assert sum(len(t) for t in tags) == len(B_IDS)
    flat = [bytes(t) for t in np.concatenate(tags)]
    assert flat == sorted(flat)


def test_both_receivers_and_points_are_not_peer_blindable() -> None:
    out, log = _audit(["A", "B"])
    assert [A_IDS[i] for i in out["A"].rows] == [B_IDS[i] for i in out["B"].rows]
    # Blinded points A sent never repeat a tag B holds: once-blinded values differ from
    # twice-blinded ones, so B cannot test membership without A's key.
    once = _chunks([r for r in log if r.frm == "A" and r.tag.startswith("ring/A")])
    tags_b = {c[:TAG_BYTES] for c in once}
    tags_from_a = _chunks([r for r in log if r.frm == "A" and r.tag == "tags"], TAG_BYTES)
    assert not tags_b & tags_from_a
