"""What crosses the wire between the gateway and a partner's serving node (9.4-3, 9.4-8).

A real node (gRPC, mutual TLS on loopback) in this process answers a real
client; every request and reply is recorded. The request carries the version
and the ids, nothing of the label holder's features; the reply carries, per
row, a status and the partner's contribution — for the linear model exactly
its ring-encoded partial score, for trees exactly one bit per split record —
and none of the partner's feature values.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np
import pandas as pd
import pytest
from serving_harness import BANK, PARTNER, Book, Trained

from sharedml.crypto import pki
from sharedml.errors import FrameError, PolicyDenied
from sharedml.learn.linear._base import encode_fixed
from sharedml.serving import wire
from sharedml.serving.adapters import TableAdapter
from sharedml.serving.allow import AllowRule
from sharedml.serving.audit import ServingAudit
from sharedml.serving.features import PreparedFeatures
from sharedml.serving.partner import PartnerNode
from sharedml.serving.parts import LINEAR, TREES, FeaturePart, StoreParts
from sharedml.serving.remote import PartnerClient
from sharedml.serving.scoring import LinearFeaturePart
from sharedml.standalone.models import LocalRegistry


def _parts(book: Book) -> StoreParts:
    registry = LocalRegistry(book.models)
    return StoreParts(registry.store(PARTNER), registry)


def _raw(book: Book, party: str) -> pd.DataFrame:
    return pd.read_csv(book.data[party], dtype={"id": str})


def _node(tmp: Path, book: Book, callers: tuple[str, ...]) -> PartnerNode:
    parts = _parts(book)
    return PartnerNode(pki.load_identity(tmp / "pki", PARTNER), callers, parts,
                       TableAdapter(_raw(book, PARTNER), "id", PARTNER), AllowRule("all"),
                       ServingAudit(tmp / "audit.jsonl", parts.store.keys))


def _recorded(client: PartnerClient) -> tuple[list[bytes], list[bytes]]:
    sent: list[bytes] = []
    got: list[bytes] = []
    inner = client._score

    async def record(payload: bytes, **kw: Any) -> bytes:
        sent.append(payload)
        got.append(await inner(payload, **kw))
        return got[-1]

    client._score = record
    return sent, got


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    pki.init_ca(tmp_path / "pki")
    for p in (BANK, PARTNER, "stranger"):
        pki.issue(tmp_path / "pki", p)
    return tmp_path


@pytest.mark.parametrize("which", ["linear", "trees"])
def test_only_ids_go_out_and_only_contributions_come_back(
        pki_dir: Path, book: Book, linear_model: Trained, tree_model: Trained, which: str):
    model = linear_model if which == "linear" else tree_model
    node = _node(pki_dir, book, (BANK,))
    ids = list(model.test_ids[:64])
    try:
        async def run() -> wire.ScoreReply:
            client = PartnerClient(PARTNER, node.address, pki.load_identity(pki_dir / "pki", BANK))
            sent, got = _recorded(client)
            reply = await client.score(model.version, [str(i) for i in ids], timeout=30)
            await client.close()
            run.sent, run.got = sent, got  # type: ignore[attr-defined]
            return reply

        reply = asyncio.run(run())
    finally:
        node.stop()
    sent, got = run.sent[0], run.got[0]  # type: ignore[attr-defined]
    assert sent == wire.encode_request(model.version, [str(i) for i in ids])
    part = _parts(book).get(model.version)
    assert isinstance(part, FeaturePart) and part.pipeline is not None
    own = _raw(book, BANK).set_index("id").loc[ids].drop(columns="y").to_numpy(np.float64)
    raw = _raw(book, PARTNER).set_index("id").loc[ids].to_numpy(np.float64)
    prepared = PreparedFeatures(TableAdapter(_raw(book, PARTNER), "id", PARTNER),
                                part.pipeline).fetch(ids)[0]
    for value in np.unique(own[own != 0])[:200]:
        assert np.float64(value).tobytes() not in sent
    for theirs in (raw, prepared):
        for value in np.unique(theirs[np.abs(theirs) > 1e-3])[:200]:
            assert np.float64(value).tobytes() not in got
    header = 4 + 1 + 1 + 4 + 4 + len(ids)
    if which == "linear":
        assert part.info.kind == LINEAR and len(got) == header + 8 * len(ids)
        assert isinstance(part, LinearFeaturePart)
        partial = ((prepared - part._mean) @ part._matrix) @ part._coef
        assert np.array_equal(reply.values, encode_fixed(partial, part._frac))
    else:
        width = (part.info.records + 7) // 8
        assert part.info.kind == TREES and len(got) == header + width * len(ids)
    assert (reply.status == wire.OK).all()


def test_a_stranger_is_refused_and_a_bad_frame_fails_only_its_call(
        pki_dir: Path, book: Book, linear_model: Trained):
    node = _node(pki_dir, book, (BANK,))
    try:
        async def run() -> None:
            stranger = PartnerClient(PARTNER, node.address,
                                     pki.load_identity(pki_dir / "pki", "stranger"))
            with pytest.raises(PolicyDenied, match="'stranger' may not request scores"):
                await stranger.score(linear_model.version, ["1"], timeout=30)
            await stranger.close()
            bank = PartnerClient(PARTNER, node.address, pki.load_identity(pki_dir / "pki", BANK))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await bank._score(b"SMLS\x01\x00\xff\xff", timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "party 'partner'" in str(refused.value.details())
            reply = await bank.score(linear_model.version, [str(linear_model.test_ids[0])], 30)
            assert reply.status.tolist() == [wire.OK]
            await bank.close()

        asyncio.run(run())
    finally:
        node.stop()


def test_wire_round_trip_and_malformed_frames():
    payload = wire.encode_request("v1", ["a", "b-2"])
    assert wire.decode_request(payload) == wire.ScoreRequest("v1", ["a", "b-2"])
    for bad in (payload[:5], payload[:-1] + b"\n", b"XXXX" + payload[4:]):
        with pytest.raises(FrameError):
            wire.decode_request(bad)
    for ids in ([], ["a\nb"], [""], ["x" * 300], ["a\x00"]):
        with pytest.raises(FrameError):
            wire.encode_request("v1", ids)
    status = np.array([0, 1], dtype=np.uint8)
    reply = wire.encode_reply(LINEAR, status, np.array([7, 0], dtype=np.uint64))
    back = wire.decode_reply(reply, 2)
    assert back.values.tolist() == [7, 0] and back.status.tolist() == [0, 1]
    with pytest.raises(FrameError):
        wire.decode_reply(reply, 3)
    with pytest.raises(FrameError):
        wire.decode_reply(reply[:-1], 2)
    bits = wire.encode_reply(TREES, status, np.array([[1, 2], [3, 4]], dtype=np.uint8))
    assert wire.decode_reply(bits, 2).values.tolist() == [[1, 2], [3, 4]]
