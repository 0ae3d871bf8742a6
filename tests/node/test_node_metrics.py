"""A node's metrics, probes and per-task log (issue 13 item 7): sizes and times, never values."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sharedml.errors import ConfigError
from sharedml.node.config import NodeConfig
from sharedml.node.metrics import ByteCount, NodeMetrics, TaskRecord
from sharedml.telemetry.access import MetricsAccess, read_token, write_token
from sharedml.telemetry.http import HealthServer
from sharedml.transport.local import LocalHub


def _value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    raise KeyError(name)


def test_the_byte_count_sees_every_payload_byte_per_peer() -> None:
    channels = LocalHub(["bank", "shop"]).channels()
    bank, shop = ByteCount(channels["bank"]), ByteCount(channels["shop"])
    bank.send("shop", "x", np.zeros(100, dtype=np.uint64))
    bank.send("shop", "y", b"12345")
    shop.recv("bank", "x")
    shop.recv("bank", "y")
    assert bank.sent == {"shop": 805} and shop.received == {"bank": 805}
    assert not bank.received and not shop.sent


def test_a_task_record_becomes_metrics_and_one_json_line(tmp_path: Path) -> None:
    metrics = NodeMetrics("bank", tmp_path)
    metrics.task_done(TaskRecord("job-1", "train", 0, "bank", "train", True, 2.5,
                                 {"shop": 800}, {"shop": 1200, "dealer": 64}))
    metrics.task_done(TaskRecord("job-1", "predict", 0, "bank", "predict", False, 0.1, {}, {},
                                 error="DataError"))
    lines = [json.loads(x) for x in (tmp_path / "tasks.jsonl").read_text().splitlines()]
    assert lines[0] | {"time": 0} == {
        "time": 0, "job": "job-1", "step": "train", "attempt": 0, "party": "bank",
        "component": "train", "result": "ok", "seconds": 2.5, "bytes_sent": {"shop": 800},
        "bytes_received": {"shop": 1200, "dealer": 64}}
    assert lines[1]["result"] == "failed" and lines[1]["error"] == "DataError"
    server = HealthServer("127.0.0.1", 0, metrics.registry, alive=lambda: True,
                          ready=lambda: False)
    try:
        base = f"http://127.0.0.1:{server.port}"
        text = httpx.get(base + "/metrics").text
        assert _value(text, "sharedml_node_bytes_received_total", peer="shop") == 1200
        assert _value(text, "sharedml_node_tasks_total", component="predict",
                      result="failed") == 1
        assert _value(text, "sharedml_node_task_seconds_count", component="train") == 1
        assert _value(text, "sharedml_process_threads", role="node") >= 1
        assert httpx.get(base + "/healthz").status_code == 200
        assert httpx.get(base + "/readyz").status_code == 503  # not (yet) known to the platform
        assert httpx.get(base + "/nothing").status_code == 404
    finally:
        server.close()


def test_heartbeats_are_counted_and_a_lost_platform_shows(tmp_path: Path) -> None:
    metrics = NodeMetrics("bank", tmp_path)
    metrics.beat(True)
    metrics.beat(True)
    metrics.beat(False)
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    assert _value(text, "sharedml_node_heartbeats_total") == 2
    assert _value(text, "sharedml_node_platform_connected") == 0


def test_a_token_guards_metrics_and_node_yaml_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "node.yaml").write_text(
        "party: bank\nplatform: 127.0.0.1:1\npki_dir: pki\nwork_dir: work\n"
        "metrics: {listen: '127.0.0.1:0', token_file: secrets/metrics.token}\n")
    config = NodeConfig.load(tmp_path / "node.yaml")
    assert isinstance(config.metrics, MetricsAccess)
    path = config.metrics.token_file
    assert path == tmp_path / "secrets" / "metrics.token"  # relative to node.yaml
    with pytest.raises(ConfigError, match="cannot read the metrics token"):
        read_token(path, "node bank")
    token = read_token(write_token(path), "node bank")
    metrics = NodeMetrics("bank", tmp_path)
    server = HealthServer("127.0.0.1", 0, metrics.registry, alive=lambda: True,
                          ready=lambda: True, token=token)
    try:
        base = f"http://127.0.0.1:{server.port}"
        for headers in ({}, {"Authorization": "Bearer " + "x" * len(token)}):
            refused = httpx.get(base + "/metrics", headers=headers)
            assert refused.status_code == 401 and "sharedml_node" not in refused.text
            assert refused.headers["www-authenticate"] == 'Bearer realm="metrics"'
        ok = httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {token.decode()}"})
        assert ok.status_code == 200 and "sharedml_node_heartbeats_total" in ok.text
        assert httpx.get(base + "/healthz").status_code == 200  # probes need no token
    finally:
        server.close()
    (tmp_path / "short").write_text("abc")
    (tmp_path / "short").chmod(0o600)
    with pytest.raises(ConfigError, match="shorter than 16"):
        read_token(tmp_path / "short", "node bank")
