"""OT-based (KKRT) PSI: building blocks, plaintext oracle, wire audit, hostile peers."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

from sharedml.errors import ConfigError, ProtocolAbort
from sharedml.psi import digest_keys, psi_digests
from sharedml.psi.kkrt import HASHES, ROW_BYTES, TAG_BYTES, bin_count, bins_of, cuckoo
from sharedml.psi.ot import base_ot_receive, base_ot_send, transpose_bits
from sharedml.session import Session
from sharedml.standalone import PartyCrashed, PartyFailed, run_in_processes, run_in_threads
from sharedml.transport.base import Channel
from sharedml.transport.codec import Value
from sharedml.transport.recording import RecordingChannel, WireRecord

from .id_sets import overlapping_sets


def _run(inputs: dict[str, list[object]], wrap: Callable[[Channel], Channel] | None = None,
         **kw: object) -> dict[str, object]:
    digests = {p: digest_keys(v) for p, v in inputs.items()}
    return run_in_threads(
        lambda s: psi_digests(s, digests[s.party], protocol="kkrt", **kw), list(inputs), wrap=wrap
    )


# -- building blocks ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 1), (16, 3), (64, 8), (512, 100), (24, 7)])
def test_bit_transpose_matches_unpacked_transpose(shape: tuple[int, int]) -> None:
    m = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    reference = np.packbits(np.unpackbits(m, axis=1, bitorder="little").T, axis=1, bitorder="little")
    got = transpose_bits(m)
    assert np.array_equal(got, reference)
    assert np.array_equal(transpose_bits(got), m)


def test_bit_transpose_needs_whole_bytes_of_rows() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        transpose_bits(np.zeros((12, 2), np.uint8))


def test_base_ot_gives_the_chosen_seed_and_hides_the_other() -> None:
    choices = np.random.default_rng(5).integers(0, 2, 128)
    out = run_in_threads(
        lambda s: base_ot_send(s, "R", 128) if s.party == "S" else base_ot_receive(s, "S", choices),
        ["S", "R"],
    )
    pairs, got = out["S"], out["R"]
    idx = np.arange(128)
    assert np.array_equal(pairs[idx, choices], got)
    assert not np.any(np.all(pairs[idx, 1 - choices] == got, axis=1))
    assert len({bytes(k) for k in pairs.reshape(-1, 16)}) == 256  # all seeds distinct


def test_cuckoo_places_every_item_once_in_one_of_its_bins() -> None:
    d16 = np.random.default_rng(1).integers(0, 256, (20_000, 16), dtype=np.uint8)
    m = bin_count(len(d16))
    bins = bins_of(d16, b"\x01" * 16, m)
    placed = cuckoo(bins, m)
    assert placed is not None
    table, which = placed
    items = table[table >= 0]
    assert np.array_equal(np.sort(items), np.arange(len(d16)))
    where = np.flatnonzero(table >= 0)
    assert np.array_equal(bins[table[where], which[where]], where)
    assert m >= 1.27 * len(d16)


# -- against a plaintext intersection ----------------------------------------------------


@pytest.mark.parametrize("overlap", [0.0, 0.01, 0.5, 1.0])
def test_two_party_equals_plaintext_intersection(overlap: float) -> None:
    a, b = overlapping_sets(np.random.default_rng(int(overlap * 100) + 7), 3000, overlap)
    out = _run({"A": a, "B": b})
    got_a = [a[i] for i in out["A"].rows]
    got_b = [b[i] for i in out["B"].rows]
    assert set(got_a) == set(a) & set(b)
    assert len(got_a) == len(set(got_a))
    assert got_a == got_b  # both sides end with the same row order
    assert out["A"].set_sizes == {"A": 3000, "B": 3000}


def test_unequal_sizes_duplicates_and_unicode() -> None:
    a = ["Zoë", "Zoe\u0308", "  straße ", "東京", "東京", "x", "ÅNGSTRÖM", "solo-a"]
    b = ["zoë", "Zoë", "straße", "東京", "ÅNGSTRÖM", "ångström", "solo-b", "x", "x"]
    b += [f"filler-{i}" for i in range(5000)]
    out = _run({"A": a, "B": b})
    got = [a[i] for i in out["A"].rows]
    assert sorted(got) == sorted(["Zoë", "  straße ", "東京", "x", "ÅNGSTRÖM"])
    # rows point at the first occurrence of a duplicated id
    assert [b[i] for i in out["B"].rows] == [{"  straße ": "straße"}.get(v, v) for v in got]
    assert out["B"].rows.max() < 9
    assert out["A"].set_sizes == {"A": 6, "B": 5008}


@pytest.mark.parametrize("receiver", ["A", "B"])
def test_result_to_one_chosen_party(receiver: str) -> None:
    a, b = overlapping_sets(np.random.default_rng(11), 800, 0.3)
    out = _run({"A": a, "B": b}, receivers=[receiver])
    other = "B" if receiver == "A" else "A"
    ids = {"A": a, "B": b}[receiver]
    assert set(ids[i] for i in out[receiver].rows) == set(a) & set(b)
    assert out[other].rows is None
    assert out[other].set_sizes == {"A": 800, "B": 800}


@pytest.mark.parametrize("sizes", [(0, 0), (0, 5), (5, 0), (1, 1)])
def test_empty_and_single_sets(sizes: tuple[int, int]) -> None:
    a = [f"k{i}" for i in range(sizes[0])]
    b = [f"k{i}" for i in range(sizes[1])]
    out = _run({"A": a, "B": b})
    expected = min(sizes)
    assert len(out["A"].rows) == len(out["B"].rows) == expected


def test_kkrt_is_two_party_only_and_auto_falls_back_for_three() -> None:
    d = {p: digest_keys([f"x{i}" for i in range(k, k + 50)]) for p, k in (("A", 0), ("B", 10), ("C", 20))}
    with pytest.raises(PartyFailed) as info:
        run_in_threads(lambda s: psi_digests(s, d[s.party], protocol="kkrt"), ["A", "B", "C"])
    assert isinstance(info.value.error, ConfigError)
    assert "two parties" in str(info.value.error)
    out = run_in_threads(lambda s: psi_digests(s, d[s.party]), ["A", "B", "C"])
    assert out["A"].size == 30


def test_parties_disagreeing_on_the_protocol_abort() -> None:
    d = digest_keys(["a", "b", "c"])
    with pytest.raises(PartyFailed) as info:
        run_in_threads(
            lambda s: psi_digests(s, d, protocol="kkrt" if s.party == "A" else "ecdh"), ["A", "B"]
        )
    assert isinstance(info.value.error, ConfigError)
    assert "protocol" in str(info.value.error)


# -- wire audit (9.4-3) ------------------------------------------------------------------

A_IDS = [f"alice-{i}" for i in range(3000)]
B_IDS = [f"alice-{i}" for i in range(1500, 4000)]


def _audit(receivers: list[str]) -> tuple[dict[str, object], list[WireRecord]]:
    log: list[WireRecord] = []
    out = _run({"A": A_IDS, "B": B_IDS}, wrap=lambda ch: RecordingChannel(ch, log),
               receivers=receivers)
    return out, log


def _windows(records: list[WireRecord], width: int) -> set[bytes]:
    seen: set[bytes] = set()
    for r in records:
        raw = r.as_bytes()
        seen.update(raw[i : i + width] for i in range(0, max(len(raw) - width + 1, 0)))
    return seen


def _looks_uniform(blob: bytes) -> None:
    data = np.frombuffer(blob, np.uint8)
    counts = np.bincount(data, minlength=256)
    chi2 = float((((counts - len(data) / 256) ** 2) / (len(data) / 256)).sum())
    assert chi2 < 400, chi2  # 255 degrees of freedom: p ≈ 1e-8 at 400
    ones = np.unpackbits(data).mean()
    assert abs(ones - 0.5) < 0.005, ones


def test_wire_carries_no_id_and_only_uniform_looking_bytes() -> None:
    out, log = _audit(["A", "B"])
    assert [A_IDS[i] for i in out["A"].rows] == [B_IDS[i] for i in out["B"].rows]
    assert len(out["A"].rows) == 1500
    for owner, ids in (("A", A_IDS), ("B", B_IDS)):
        digests = digest_keys(ids)
        leaving = [r for r in log if r.frm == owner]
        blob = b"".join(r.as_bytes() for r in leaving)
        assert all(s.encode() not in blob for s in ids[:500])
        # not even 8 bytes of any key digest appear, at any offset
        seen = _windows(leaving, 8)
        assert not seen & {bytes(d[i : i + 8]) for d in digests for i in range(0, 32, 8)}
    # A (the receiver role) sends the OT-extension matrix: one-time-padded, uniform-looking
    u = b"".join(r.as_bytes() for r in log if r.tag == "kkrt/u")
    assert len(u) == bin_count(len(A_IDS)) * ROW_BYTES
    _looks_uniform(u)
    table = b"".join(r.as_bytes() for r in log if r.tag == "kkrt/table")
    assert len(table) == len(B_IDS) * HASHES * TAG_BYTES  # B's set size, nothing more
    _looks_uniform(table)


def test_what_each_role_receives() -> None:
    out, log = _audit(["A"])
    assert out["B"].rows is None
    to_b = {r.tag for r in log if r.to == "B"}
    to_a = {r.tag for r in log if r.to == "A"}
    # B (sender, not a receiver) gets parameters, sizes, base-OT points, the salt
    # and the padded matrix: never a match list.
    assert to_b == {"params", "size", "kkrt/bot/A", "kkrt/salt", "kkrt/u"}
    assert to_a == {"params", "size", "kkrt/bot/B", "kkrt/code", "kkrt/table"}
    out, log = _audit(["A", "B"])
    matches = [r.value for r in log if r.tag == "kkrt/matches"]
    assert len(matches) == 1 and len(matches[0]) == 1500  # exactly the intersection


# -- hostile or broken peers (8.3-2) ------------------------------------------------------


class _Tamper(Channel):
    """Passes messages through, rewriting those under ``tag`` with ``change``."""

    def __init__(self, inner: Channel, tag: str, change: Callable[[Value], Value]) -> None:
        super().__init__(inner.party, inner.peers, inner.job, inner.timeout)
        self.inner, self.tag, self.change = inner, tag, change

    def _send(self, to: str, tag: str, value: Value) -> None:
        self.inner._send(to, tag, self.change(value) if tag == self.tag else value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        return self.inner._recv(frm, tag, timeout)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(
    ("tag", "change", "victim", "words"),
    [
        ("kkrt/u", lambda v: v[:-8], "B", "OT-extension matrix"),
        ("kkrt/table", lambda v: v.astype(np.uint16), "A", "PRF table"),
        ("kkrt/bot/B", lambda v: np.zeros_like(v), "A", "prime-order group"),
        ("kkrt/salt", lambda v: v[:8], "B", "salt"),
        ("kkrt/matches", lambda v: v + 10_000, "B", "match list"),
        ("size", lambda v: v * 0 - 5, "B", "announced a set of -5"),
    ],
)
def test_malformed_messages_abort_naming_party_and_step(
    tag: str, change: Callable[[Value], Value], victim: str, words: str
) -> None:
    a, b = overlapping_sets(np.random.default_rng(3), 300, 0.5)
    with pytest.raises(PartyFailed) as info:
        _run({"A": a, "B": b}, wrap=lambda ch: _Tamper(ch, tag, change) if ch.party != victim else ch)
    err = info.value.error
    assert isinstance(err, ProtocolAbort)
    assert err.party == victim and err.step.startswith("psi/")
    assert words in str(err)


# -- real processes over gRPC with mutual TLS --------------------------------------------

G_A = [f"cust-{i}" for i in range(0, 6000)]
G_B = [f"cust-{i}" for i in range(4000, 9000)]


def _party(session: Session) -> list[int]:
    ids = G_A if session.party == "A" else G_B
    result = psi_digests(session, digest_keys(ids), protocol="kkrt")
    assert result.rows is not None
    return [int(ids[i].split("-")[1]) for i in result.rows]


@pytest.mark.slow
def test_kkrt_over_grpc_processes() -> None:
    out = run_in_processes(_party, ["A", "B"])
    assert out["A"] == out["B"]
    assert sorted(out["A"]) == list(range(4000, 6000))


class _DieOnChunk(Channel):
    """B's process exits (as a killed peer would) when its third OT-extension chunk arrives."""

    def __init__(self, inner: Channel) -> None:
        super().__init__(inner.party, inner.peers, inner.job, inner.timeout)
        self.inner, self.seen = inner, 0

    def _send(self, to: str, tag: str, value: Value) -> None:
        self.inner._send(to, tag, value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        if tag.endswith("kkrt/u"):
            self.seen += 1
            if self.seen > 2:
                os._exit(9)
        return self.inner._recv(frm, tag, timeout)

    def close(self) -> None:
        self.inner.close()


def _die_at_b(ch: Channel) -> Channel:
    return _DieOnChunk(ch) if ch.party == "B" else ch


def _big_party(session: Session) -> int | None:
    lo = 0 if session.party == "A" else 50_000
    return psi_digests(session, digest_keys([f"c{i}" for i in range(lo, lo + 150_000)]),
                       protocol="kkrt").size


@pytest.mark.slow
def test_a_peer_dying_mid_protocol_fails_the_run_naming_it() -> None:
    # A, blocked on B's PRF table, must not hang: the run fails naming B as crashed.
    with pytest.raises(PartyFailed) as info:
        run_in_processes(_big_party, ["A", "B"], wrap=_die_at_b, timeout=60)
    assert info.value.party == "B"
    assert isinstance(info.value.error, PartyCrashed) and "exit code 9" in str(info.value)
