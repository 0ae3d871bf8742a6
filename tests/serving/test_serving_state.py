"""What the serving processes keep: the node's keys (the same ones that seal its
model parts), the sealed cache, the routing table across restarts, and the
hash-chained audit log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sharedml.errors import ConfigError, DataError
from sharedml.modelpart import FileNodeKeys
from sharedml.serving.audit import ServingAudit, verify_chain
from sharedml.serving.cache import RemoteCache
from sharedml.serving.versions import Routing, load_routing, save_routing


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_node_keys_are_0600_and_derive_stable_subkeys(tmp_path: Path):
    key = FileNodeKeys.create(tmp_path / "keys")
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in (tmp_path / "keys").glob("*.key"))
    sealed = key.seal(b"secret", b"aad")
    assert b"secret" not in sealed and key.open(sealed, b"aad") == b"secret"
    with pytest.raises(DataError):
        key.open(sealed, b"other aad")
    again = FileNodeKeys(tmp_path / "keys")
    assert again.derive("x") == key.derive("x") != key.derive("y")
    assert len(key.derive("x")) == 32
    assert key.derive("x") != FileNodeKeys.create(tmp_path / "other").derive("x")
    (tmp_path / "keys" / "at-rest.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        FileNodeKeys(tmp_path / "keys")


def test_cache_entries_expire_and_the_oldest_go_first():
    clock = Clock()
    cache = RemoteCache(capacity=2, ttl=10, clock=clock)
    cache.put("v1", "p", ["a", "b"], np.array([1, 2], dtype=np.uint64))
    assert [None if r is None else int(r) for r in cache.get("v1", "p", ["a", "b", "c"])] == [
        1, 2, None]
    cache.get("v1", "p", ["a"])  # a is now the most recent
    cache.put("v1", "p", ["c"], np.array([3], dtype=np.uint64))
    assert cache.get("v1", "p", ["b"]) == [None] and len(cache) == 2
    assert cache.get("v2", "p", ["a"]) == [None]  # keyed by version
    clock.now += 11
    assert cache.get("v1", "p", ["a", "c"]) == [None, None] and len(cache) == 0


def test_the_cache_is_sealed_at_rest_and_reloads_what_is_still_live(tmp_path: Path):
    clock = Clock()
    key = FileNodeKeys.create(tmp_path / "keys")
    cache = RemoteCache(capacity=10, ttl=10, clock=clock)
    cache.put("v1", "p", ["id-1", "id-2"], np.array([[5, 6], [7, 8]], dtype=np.uint8))
    cache.put("v2", "q", ["id-3"], np.array([2**63 + 5], dtype=np.uint64))
    cache.save(tmp_path / "cache.sealed", key)
    raw = (tmp_path / "cache.sealed").read_bytes()
    assert (tmp_path / "cache.sealed").stat().st_mode & 0o777 == 0o600
    assert b"id-1" not in raw and b"v1" not in raw
    again = RemoteCache(capacity=10, ttl=10, clock=clock)
    assert again.load(tmp_path / "cache.sealed", key) == 3
    assert again.get("v1", "p", ["id-2"])[0].tolist() == [7, 8]  # type: ignore[union-attr]
    assert int(again.get("v2", "q", ["id-3"])[0]) == 2**63 + 5  # type: ignore[arg-type]
    clock.now += 11
    assert RemoteCache(10, 10, clock).load(tmp_path / "cache.sealed", key) == 0
    with pytest.raises(DataError, match="another node's key"):
        RemoteCache(10, 10, clock).load(tmp_path / "cache.sealed",
                                        FileNodeKeys.create(tmp_path / "k2"))


def test_routing_canary_promote_rollback_and_persistence(tmp_path: Path):
    r = Routing().with_canary("v1", 50)
    assert r == Routing(stable="v1")  # the first version is simply served
    r = r.with_canary("v2", 30)
    share = np.mean([r.route(str(i)) == "v2" for i in range(10_000)])
    assert 0.27 < share < 0.33
    assert all(r.route("42") == r.route("42") for _ in range(3))
    assert r.rolled_back() == Routing(stable="v1")
    promoted = r.promoted()
    assert promoted == Routing(stable="v2", previous="v1")
    assert promoted.rolled_back() == Routing(stable="v1")
    with pytest.raises(ConfigError, match="no canary"):
        promoted.promoted()
    with pytest.raises(ConfigError, match="0-100"):
        r.with_canary("v3", 101)
    with pytest.raises(ConfigError, match="invalid model version name"):
        r.with_canary("../etc", 1)
    save_routing(tmp_path, r)
    assert load_routing(tmp_path) == r
    assert (tmp_path / "routing.json").stat().st_mode & 0o777 == 0o600
    (tmp_path / "routing.json").write_text("{broken")
    with pytest.raises(ConfigError, match="remove it"):
        load_routing(tmp_path)


def test_the_audit_log_hashes_ids_and_breaks_when_edited(tmp_path: Path):
    key = FileNodeKeys.create(tmp_path / "keys")
    audit = ServingAudit(tmp_path / "audit.jsonl", key)
    audit.record("score", ["cust-1", "cust-2"], version="v1", outcome="ok")
    audit.record("score", ["cust-3"], version="v1", outcome="UnknownRecord")
    audit.close()
    reopened = ServingAudit(tmp_path / "audit.jsonl", key)  # the chain continues
    reopened.record("version", [], action="promote")
    reopened.close()
    entries = verify_chain(tmp_path / "audit.jsonl")
    assert [e["event"] for e in entries] == ["score", "score", "version"]
    assert entries[0]["ids"] == [reopened.id_hash("cust-1"), reopened.id_hash("cust-2")]
    assert "cust-1" not in (tmp_path / "audit.jsonl").read_text()
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    doc = json.loads(lines[1])
    doc["outcome"] = "ok"
    lines[1] = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    (tmp_path / "audit.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 3"):
        verify_chain(tmp_path / "audit.jsonl")


def test_a_full_audit_queue_makes_record_wait_and_close_writes_every_entry(tmp_path: Path):
    key = FileNodeKeys.create(tmp_path / "keys")
    audit = ServingAudit(tmp_path / "audit.jsonl", key, limit=2)
    sent = [f"cust-{n}" for n in range(300)]
    for id_ in sent:  # far more than the queue holds: record waits for the writer
        audit.record("score", [id_], version="v1", outcome="ok")
    audit.close()
    audit.close()  # a second close (signal after lifespan) is harmless
    entries = verify_chain(tmp_path / "audit.jsonl")
    assert [e["ids"] for e in entries] == [[audit.id_hash(i)] for i in sent]


def test_a_failed_audit_writer_refuses_requests_instead_of_serving_them_unaudited(
        tmp_path: Path) -> None:
    key = FileNodeKeys.create(tmp_path / "keys")
    target = tmp_path / "gone" / "audit.jsonl"  # its folder is missing: the writer's open fails
    audit = ServingAudit(target, key, limit=2)
    audit._thread.join(timeout=10)
    for _ in range(5):  # more than the queue holds: each call refuses, none waits
        with pytest.raises(DataError, match="cannot be written") as caught:
            audit.record("score", ["cust-1"], version="v1", outcome="ok")
        assert caught.value.step == "serve: audit" and caught.value.remedy
    audit.close()


def test_entries_of_one_window_are_one_batch_and_close_ends_the_window(tmp_path: Path):
    key = FileNodeKeys.create(tmp_path / "keys")
    audit = ServingAudit(tmp_path / "audit.jsonl", key, window=3600.0)  # an hour: only close ends it
    sent = [f"cust-{n}" for n in range(50)]
    for id_ in sent:
        audit.record("score", [id_], version="v1", outcome="ok")
    log = tmp_path / "audit.jsonl"
    assert audit._thread.is_alive() and (not log.exists() or not log.read_text())
    audit.close()  # SIGTERM's path: the window ends at once, every entry is written and synced
    entries = verify_chain(log)
    assert [e["ids"] for e in entries] == [[audit.id_hash(i)] for i in sent]
