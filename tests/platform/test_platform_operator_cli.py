"""The operator's platform tools on the database (``sharedml user|audit|platform``), as a
new operator meets them: run from the wrong folder, and a user's lost password."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.mark.parametrize("command", [["audit", "verify"], ["audit", "export"], ["user", "list"],
                                     ["platform", "backup", "b.jsonl", "--no-key"]])
def test_operator_tools_refuse_a_folder_without_a_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """Run from the wrong folder, 'audit verify' made ./platform-data with an empty
    database and said 'OK: 0 entries' (and 'backup' saved that empty platform): now it
    names the folder and says which one to give, and makes nothing."""
    import typer

    from sharedml.errors import ConfigError
    from sharedml.platform import cli

    app = typer.Typer()
    cli.register(app)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, command)
    assert isinstance(result.exception, ConfigError), result.output
    assert "no platform database in platform-data" in str(result.exception)
    assert "--data-dir" in (result.exception.remedy or "")
    assert list(tmp_path.iterdir()) == []


def test_the_operator_sets_a_lost_password_from_standard_input(tmp_path: Path) -> None:
    """'user set --password' reads the new one as 'user add' does (never an argument); the
    old one stops working, the new one logs in."""
    from sharedml.errors import AuthError
    from sharedml.platform.cli import user_app

    runner = CliRunner()
    common = ["--data-dir", str(tmp_path), "--no-totp"]
    assert runner.invoke(user_app, ["add", "ops", "--role", "admin", *common],
                         input="first-password-1\n").exit_code == 0
    changed = runner.invoke(user_app, ["set", "ops", "--password", "--data-dir", str(tmp_path)],
                            input="second-password-2\n")
    assert changed.exit_code == 0, changed.output
    from sharedml.platform.service import Platform

    p = Platform.open(tmp_path)
    with pytest.raises(AuthError):
        p.auth.login("ops", "first-password-1", None)
    assert p.auth.login("ops", "second-password-2", None)[1].username == "ops"
