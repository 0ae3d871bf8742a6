"""A node's compute: section (8.5-2): read from YAML, checked, local by default (no ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharedml.errors import ConfigError
from sharedml.node.agent import NodeConfig
from sharedml.scale.config import DEFAULT_BUCKET_ROWS

BASE = "party: bank\nplatform: 127.0.0.1:1\npki_dir: pki\nwork_dir: work\n"


def _load(tmp_path: Path, extra: str) -> NodeConfig:
    path = tmp_path / "node.yaml"
    path.write_text(BASE + extra, encoding="utf-8")
    return NodeConfig.load(path)


def test_default_is_this_process(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert config.compute.local and config.compute.ray is None


def test_ray_section_is_read_with_its_limits(tmp_path: Path) -> None:
    config = _load(tmp_path, (
        "compute:\n  ray:\n    address: ray://head:10001\n    workers: 4\n"
        "    cpus_per_worker: 2\n    memory_per_worker_mb: 4096\n    listen_host: 10.0.0.5\n"
    ))
    ray = config.compute.ray
    assert ray is not None and not config.compute.local
    assert (ray.address, ray.workers, ray.cpus_per_worker, ray.memory_per_worker_mb) == (
        "ray://head:10001", 4, 2.0, 4096)
    assert ray.listen_host == "10.0.0.5" and ray.bucket_rows == DEFAULT_BUCKET_ROWS


@pytest.mark.parametrize(("extra", "field"), [
    ("compute:\n  ray:\n    workers: 0\n", "compute.ray.workers"),
    ("compute:\n  ray:\n    adress: auto\n", "compute.ray.adress"),
    ("compute:\n  spark: {}\n", "compute.spark"),
])
def test_a_bad_section_names_the_field(tmp_path: Path, extra: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        _load(tmp_path, extra)
