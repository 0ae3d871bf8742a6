"""``sharedml deploy`` writes one bundle per organisation; each file is checked as its tool would.

Node configs load and pass the node's own address checks; compose files and
Kubernetes manifests parse and restart what dies; systemd units pass
``systemd-analyze verify`` where it is installed; no private key, token or
password is in any bundle. (The image itself cannot be built here: no docker
daemon on these machines; kubectl cannot dry-run without a cluster's API either.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sharedml.cli import _load_plugins, app
from sharedml.crypto import pki
from sharedml.deployment.bundle import write_bundles
from sharedml.deployment.plan import DeploymentPlan
from sharedml.errors import ConfigError
from sharedml.node.addresses import AddressPlan
from sharedml.node.agent import NodeConfig

ROOT = Path(__file__).resolve().parents[2]


def plan_dict(prefix: Path) -> dict[str, Any]:
    return {
        "name": "a1-credit",
        "platform": {"host": "127.0.0.1"},
        "dealer": {"host": "localhost"},
        "organisations": {
            "bank": {"host": "127.0.0.1", "datasets": {"customers": "/srv/bank/customers.csv"}},
            "partner": {"host": "localhost", "port": 7001, "owners": ["risk-lead", "dpo"],
                        "datasets": {"features": "/data/partner/features.csv"}},
        },
        "prefix": str(prefix),
        "sharedml": str(Path(sys.executable).with_name("sharedml")),
        "user": "root",
    }


@pytest.fixture
def bundles(tmp_path: Path) -> Path:
    ca = tmp_path / "ca"
    pki.init_ca(ca)
    out = tmp_path / "out"
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(plan_dict(out)))
    _load_plugins()
    result = CliRunner().invoke(app, ["deploy", str(plan), "--out", str(out), "--ca", str(ca)])
    assert result.exit_code == 0, result.output
    return out


def test_one_bundle_per_organisation_and_the_platform_and_dealer(bundles: Path) -> None:
    assert sorted(p.name for p in bundles.iterdir()) == [
        "README.md", "bank", "dealer", "partner", "platform"]
    for who in ("bank", "dealer", "partner", "platform"):
        b = bundles / who
        for f in ("STEPS.md", "compose.yaml", f"k8s/{who}.yaml",
                  f"systemd/sharedml-{who}.service", "pki/ca.pem"):
            assert (b / f).is_file(), f"{who}: {f}"
    assert (bundles / "platform" / "alerts.yml").is_file()


def test_no_private_key_token_or_password_is_in_any_bundle(bundles: Path) -> None:
    for f in bundles.rglob("*"):
        if f.is_file():
            text = f.read_text()
            assert "PRIVATE KEY" not in text, f
            assert "password:" not in text.lower(), f


def test_node_configs_load_and_pass_the_address_checks(bundles: Path) -> None:
    bank = NodeConfig.load(bundles / "bank" / "node.yaml")
    assert (bank.party, bank.listen, bank.advertise) == ("bank", "0.0.0.0:7000", "127.0.0.1:7000")
    assert bank.platform == "127.0.0.1:8601" and bank.pki_dir == bundles / "bank" / "pki"
    assert set(bank.approvers) == {"bank-owner"}
    partner = NodeConfig.load(bundles / "partner" / "node.yaml")
    assert set(partner.approvers) == {"risk-lead", "dpo"}
    assert partner.approvers["dpo"] == bundles / "partner" / "owners" / "dpo.pub"
    dealer = NodeConfig.load(bundles / "dealer" / "node.yaml")
    assert dealer.role == "dealer" and not dealer.datasets
    for config in (bank, partner, dealer):
        assert AddressPlan.check(config.listen, config.advertise, party=config.party)


def test_node_configs_pin_the_key_the_platforms_operator_sends(
    bundles: Path, tmp_path: Path
) -> None:
    from sharedml.checkpoints import fingerprint
    from sharedml.platform.audit_checkpoints import audit_key
    from sharedml.platform.keys import SecretBox

    SecretBox.from_data_dir(bundles / "platform" / "data")  # the platform's first start
    pem = audit_key(bundles / "platform" / "data")
    for who in ("bank", "partner", "dealer"):
        config = NodeConfig.load(bundles / who / "node.yaml")
        where = bundles / who / "pki" / "platform-audit.pem"
        assert config.audit_checkpoint_key == str(where)
        with pytest.raises(ConfigError, match="cannot read the platform's audit key") as info:
            config.checkpoint_pin()  # not sent yet: the node would not start
        assert "platform audit-key" in (info.value.remedy or "")
        where.write_text(pem)
        assert config.checkpoint_pin() == fingerprint(pem)
        assert "platform-audit.pem" in (bundles / who / "STEPS.md").read_text()
    assert "sharedml platform audit-key --data-dir data --out platform-audit.pem" in (
        bundles / "platform" / "STEPS.md").read_text()


def test_compose_files_restart_what_dies_and_mount_datasets_read_only(bundles: Path) -> None:
    bank = yaml.safe_load((bundles / "bank" / "compose.yaml").read_text())
    service = bank["services"]["bank"]
    assert service["restart"] == "unless-stopped"
    assert service["command"] == ["node", "/bundle/node.yaml"]
    assert "/srv/bank:/srv/bank:ro" in service["volumes"]
    assert "7000:7000" in service["ports"]
    platform = yaml.safe_load((bundles / "platform" / "compose.yaml").read_text())
    assert platform["services"]["platform"]["restart"] == "unless-stopped"
    assert "--pki-dir" in platform["services"]["platform"]["command"]


def test_kubernetes_manifests_parse_and_mount_the_key_from_a_secret(bundles: Path) -> None:
    docs = list(yaml.safe_load_all((bundles / "partner" / "k8s" / "partner.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "PersistentVolumeClaim"]
    pod = docs[0]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Always" and docs[0]["spec"]["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["pki"]["secret"]["secretName"] == "sharedml-partner-pki"
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/bundle/owners/dpo.pub"]["subPath"] == "owners.dpo.pub"
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    steps = (bundles / "partner" / "STEPS.md").read_text()
    assert "--from-file=owners.dpo.pub=owners/dpo.pub" in steps


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_units_verify(bundles: Path) -> None:
    for unit in bundles.glob("*/systemd/*.service"):
        proc = subprocess.run(["systemd-analyze", "verify", str(unit)],
                              capture_output=True, text=True, timeout=60)
        problems = [line for line in proc.stderr.splitlines() if unit.name in line]
        assert proc.returncode == 0 and not problems, proc.stderr
        text = unit.read_text()
        assert "Restart=on-failure" in text and f"WorkingDirectory={bundles}" in text


def test_a_bad_plan_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    raw = plan_dict(tmp_path)
    raw["organisations"]["bank"]["host"] = "0.0.0.0"
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"organisations\.bank\.host"):
        DeploymentPlan.load(path)
    raw = plan_dict(tmp_path)
    raw["organisations"]["platform"] = raw["organisations"].pop("bank")
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="not 'platform'"):
        DeploymentPlan.load(path)


def test_bundles_are_never_written_over(tmp_path: Path) -> None:
    plan = DeploymentPlan.model_validate(plan_dict(tmp_path))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "bank").mkdir()
    with pytest.raises(ConfigError, match="not empty"):
        write_bundles(plan, tmp_path / "out")


def test_the_dockerfile_builds_from_python_slim_with_no_network_at_run_time() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert stages == ["python:3.11-slim", "python:3.11-slim"]
    assert "--no-index" in text  # the final stage installs only the wheels built before it
    assert 'ENTRYPOINT ["sharedml"]' in text
