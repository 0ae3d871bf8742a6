"""``sharedml components``: the job steps this installation knows, and their parameters.

``list`` prints every step (built in or from a package's ``sharedml.components``
entry point) with its one-line summary; ``show NAME`` prints the step's
description and a table of its parameters (type, default, description), the
schema a job spec's step is checked against.
"""

from __future__ import annotations

import inspect
import json
from typing import Any


def _type_of(prop: dict[str, Any]) -> str:
    """A short reading of one JSON-schema property's type."""
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    if "anyOf" in prop:
        return " | ".join(_type_of(p) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list[{_type_of(prop.get('items', {}))}]"
    if prop.get("type") == "object":
        extra = prop.get("additionalProperties")
        return f"dict[str, {_type_of(extra)}]" if isinstance(extra, dict) else "dict"
    return str(prop.get("type", prop.get("$ref", "any").rsplit("/", 1)[-1]))


def parameters(name: str) -> list[dict[str, str]]:
    """One row per parameter of step ``name``: name, type, default, description."""
    from sharedml.components import registry

    schema = registry.get(name).params.model_json_schema()
    rows = []
    for field, prop in schema.get("properties", {}).items():
        required = field in schema.get("required", [])
        default = "(required)" if required else json.dumps(prop.get("default"))
        rows.append({"name": field, "type": _type_of(prop), "default": default,
                     "description": prop.get("description", "")})
    return rows


def register(app: Any) -> None:
    """Add ``sharedml components list|show`` to the CLI."""
    import typer

    group = typer.Typer(help="The job steps this installation knows, and their parameters.")
    app.add_typer(group, name="components")

    @group.command("list")
    def list_command() -> None:
        """Every job step with its summary."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        from sharedml.components import registry

        table = Table(title="job steps")
        table.add_column("step")
        table.add_column("summary")
        for name in sorted(registry.available()):
            table.add_row(escape(name), escape(registry.get(name).summary))
        Console().print(table)

    @group.command("show")
    def show_command(name: str = typer.Argument(..., help="a step name, e.g. psi")) -> None:
        """The step's description and its parameters (type, default, description)."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        from sharedml.components import registry

        console = Console()
        component = registry.get(name)
        console.print(f"[bold]{escape(name)}[/]: {escape(component.summary)}")
        doc = inspect.getdoc(component)
        if doc:
            console.print(doc, markup=False, highlight=False)
        table = Table(title=f"parameters of {name}")
        for col in ("parameter", "type", "default", "description"):
            table.add_column(col, overflow="fold")
        for row in parameters(name):
            table.add_row(*(escape(row[k]) for k in ("name", "type", "default", "description")))
        console.print(table)
