"""The platform's ``tee:`` config and an enclave node's config: read, resolved, and refused with the field named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sharedml.errors import ConfigError
from sharedml.node.config import NodeConfig
from sharedml.platform.tee_config import PlatformFile
from sharedml.tee.attestation.sim import simulated_vendor


def test_platform_tee_section_builds_policy_and_verifier(tmp_path: Path) -> None:
    simulated_vendor(tmp_path / "vendor")
    (tmp_path / "platform.yaml").write_text(
        "tee:\n  policy: {signer: ab12, product_id: 1, min_svn: 2, allow_simulation: true,"
        " tcb_statuses: [UpToDate, SWHardeningNeeded]}\n  trust: vendor\n"
        "  enclaves: [{name: sgx-1, address: '10.0.0.5:7300'}]\n")
    tee = PlatformFile.load(tmp_path / "platform.yaml").tee
    assert tee is not None and tee.trust == tmp_path / "vendor"  # relative to the file
    policy = tee.policy.policy()
    assert (policy.signer, policy.product_id, policy.min_svn) == ("ab12", 1, 2)
    assert policy.tcb_statuses == frozenset({"UpToDate", "SWHardeningNeeded"}) and not policy.allow_debug
    assert tee.enclaves[0].address == "10.0.0.5:7300"
    assert tee.verifier() is not None
    assert PlatformFile.load(_write(tmp_path, "empty.yaml", "")).tee is None


@pytest.mark.parametrize(("text", "field"), [
    ("tee:\n  policy: {signer: ab, product_id: 1}\n  trust: vendor\n", "tee"),  # simulator, not allowed
    ("tee:\n  policy: {min_svn: 1}\n", "tee"),  # neither measurements nor signer
    ("tee:\n  policy: {measurements: [ab]}\n  enclaves: [{name: 'a b', address: x:1}]\n", "tee.enclaves.0.name"),
    ("tee:\n  policy: {measurements: [ab]}\n  colour: blue\n", "tee.colour"),
    ("tee: [\n", "cannot read"),
])
def test_bad_platform_config_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        PlatformFile.load(_write(tmp_path, "platform.yaml", text))


def test_enclave_node_config(tmp_path: Path) -> None:
    base = {"party": "enclave", "platform": "127.0.0.1:1", "pki_dir": "pki", "work_dir": "work"}
    sim = {"simulate": {"vendor": "vendor", "signer": "signer.pem"}}
    config = NodeConfig.load(_write(tmp_path, "node.yaml", json.dumps({**base, "role": "enclave", "enclave": sim})))
    assert config.enclave is not None and config.enclave.simulate is not None
    assert config.enclave.simulate.vendor == tmp_path / "vendor"
    for bad, message in (
        ({**base, "role": "enclave"}, "needs 'enclave:'"),
        ({**base, "enclave": sim}, "only an enclave node"),
        ({**base, "role": "enclave", "enclave": {**sim, "address": "h:1"}}, "exactly one"),
        ({**base, "role": "enclave", "enclave": sim, "datasets": {"d": "d.csv"}}, "enclave node holds no datasets"),
    ):
        with pytest.raises(ConfigError, match=message):
            NodeConfig.load(_write(tmp_path, "bad.yaml", json.dumps(bad)))


def _write(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text)
    return folder / name
