"""``sharedml model`` on a ``sharedml run`` models folder: every command, end to end."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import typer
from typer.testing import CliRunner

from sharedml.modelpart.cli import register

app = typer.Typer()
register(app)


@app.command("noop")
def noop() -> None:  # a second command keeps typer from flattening the group
    """Nothing."""


runner = CliRunner()


def sharedml(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_list_tag_show_export_import_delete(trained: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(trained / "models", models)
    m = ["--models", str(models)]
    listed = json.loads(sharedml("model", "list", *m))
    assert [(v["name"], v["version"]) for v in listed] == [("breast-lr", 1)]
    assert "breast-lr@candidate -> version 1" in sharedml("model", "tag", "breast-lr@1",
                                                          "candidate", *m)
    shown = json.loads(sharedml("model", "show", "breast-lr@candidate", *m))
    assert shown["uid"] == listed[0]["uid"] and shown["aliases"] == ["candidate"]

    export = tmp_path / "host.smx"
    sharedml("model", "export", "breast-lr@candidate", "--party", "host", "--out", str(export), *m)
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    node2 = tmp_path / "node2"
    sharedml("model", "keys", str(node2 / "keys"))
    refused = runner.invoke(app, ["model", "import", "breast-lr@1", str(export), "--party", "host",
                                  "--parts", str(node2 / "parts"), "--keys", str(node2 / "keys"),
                                  *m])
    assert refused.exit_code != 0  # node 2 does not trust node 1's key yet
    out = sharedml("model", "import", "breast-lr@1", str(export), "--party", "host",
                   "--parts", str(node2 / "parts"), "--keys", str(node2 / "keys"),
                   "--trust", str(models / "host" / "keys" / "signing.pub.pem"), *m)
    assert shown["fingerprints"]["host"] in out

    denied = runner.invoke(app, ["model", "delete", "breast-lr@1", "--consent", "guest", *m])
    assert denied.exit_code != 0
    sharedml("model", "delete", "breast-lr@1", "--consent", "guest", "--consent", "host", *m)
    assert json.loads(sharedml("model", "list", *m)) == []
    assert not list((models / "host" / "parts").glob("*.smp"))


def test_open_reads_a_sealed_output(tmp_path: Path) -> None:
    from sharedml.components.saved_models import SCORES_AAD
    from sharedml.modelpart import FileNodeKeys

    keys = FileNodeKeys.create(tmp_path / "keys")
    (tmp_path / "p.sealed").write_bytes(keys.seal(b"id,score\n7,0.5\n", aad=SCORES_AAD))
    out = sharedml("model", "open", str(tmp_path / "p.sealed"), "--keys", str(tmp_path / "keys"))
    assert out == "id,score\n7,0.5\n"
