"""``sharedml components list|show``: what an invalid-parameter error points users to."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from sharedml.components import registry
from sharedml.components.cli import parameters, register
from sharedml.errors import ConfigError


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer from flattening the group
        """Nothing."""

    return app


def test_list_names_every_registered_step() -> None:
    out = CliRunner().invoke(_app(), ["components", "list"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    for name in registry.available():
        assert name in out.output


def test_show_gives_each_parameter_with_type_and_default() -> None:
    rows = {r["name"]: r for r in parameters("psi")}
    assert rows["protocol"]["type"] == '"auto" | "kkrt" | "ecdh"'
    assert rows["protocol"]["default"] == '"auto"'
    assert rows["key"]["type"] == "string | list[string] | null"
    out = CliRunner().invoke(_app(), ["components", "show", "psi"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "list[string]" in out.output  # not eaten as rich markup
    for name in rows:
        assert name in out.output


def test_show_of_an_unknown_step_is_a_clear_error() -> None:
    out = CliRunner().invoke(_app(), ["components", "show", "nosuch"])
    assert out.exit_code != 0
    assert isinstance(out.exception, ConfigError) and "unknown step 'nosuch'" in str(out.exception)


def test_the_invalid_parameter_remedy_names_a_command_that_exists() -> None:
    try:
        registry.get("split").parse({"test_size": 2.0}, "split")
    except ConfigError as exc:
        assert exc.remedy == "see 'sharedml components show split' for the schema"
    else:  # pragma: no cover
        raise AssertionError("test_size 2.0 must be refused")
    out = CliRunner().invoke(_app(), ["components", "show", "split"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "test_size" in out.output
