"""``sharedml node init CONFIG``: the node's at-rest and signing keys, 0600, made once
(issue 12 item 4); the agent's own ``sharedml node CONFIG`` form is unchanged."""

from __future__ import annotations

import stat
from pathlib import Path

from typer.testing import CliRunner

from sharedml.cli import _load_plugins, app
from sharedml.modelpart import FileNodeKeys
from sharedml.modelpart.keys import AT_REST_FILE, PUBLIC_FILE, SIGNING_FILE

_load_plugins()
runner = CliRunner()


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(f"party: bank\nplatform: 127.0.0.1:1\npki_dir: pki\nwork_dir: work\n{extra}")
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_private_keys_once(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = runner.invoke(app, ["node", "init", str(config)])
    assert first.exit_code == 0, first.output
    keys = tmp_path / "work" / "keys"
    assert _mode(keys) == 0o700
    assert _mode(keys / AT_REST_FILE) == _mode(keys / SIGNING_FILE) == 0o600
    made = FileNodeKeys(keys)
    assert made.key_id.hex() in first.output and "created" in first.output
    sealed = made.seal(b"part", aad=b"x")
    again = runner.invoke(app, ["node", "init", str(config)])
    assert again.exit_code == 0 and "kept the existing" in again.output
    assert FileNodeKeys(keys).open(sealed, aad=b"x") == b"part"  # never replaced
    assert (keys / PUBLIC_FILE).read_bytes() == made.public_key_pem()


def test_init_uses_keys_dir_and_refuses_readable_keys(tmp_path: Path) -> None:
    config = _config(tmp_path, "keys_dir: vault\n")
    assert runner.invoke(app, ["node", "init", str(config)]).exit_code == 0
    assert (tmp_path / "vault" / AT_REST_FILE).exists()
    (tmp_path / "vault" / AT_REST_FILE).chmod(0o644)
    refused = runner.invoke(app, ["node", "init", str(config)])
    assert refused.exit_code != 0 and AT_REST_FILE in str(refused.exception or refused.output)


def test_node_without_init_still_takes_one_config(tmp_path: Path) -> None:
    out = runner.invoke(app, ["node", "init"])
    assert out.exit_code != 0 and "needs the node's config" in str(out.exception)
    out = runner.invoke(app, ["node", str(_config(tmp_path)), "extra"])
    assert out.exit_code != 0 and "unexpected argument" in str(out.exception)
