"""The ``sharedml`` command.

Each area contributes its commands through a ``register(app)`` function in the
module listed in :data:`PLUGINS`; modules keep heavy imports inside their
command functions so ``sharedml --help`` stays fast.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import typer
from rich.console import Console

from sharedml.errors import SharedMLError

app = typer.Typer(
    name="sharedml",
    help="Shared machine learning: train and use one model across organisations "
    "without revealing their data.",
    no_args_is_help=True,
    add_completion=False,
)
pki_app = typer.Typer(help="The deployment's certificate authority and party certificates.")
app.add_typer(pki_app, name="pki")
console = Console(stderr=True)

#: Modules with a ``register(app: typer.Typer) -> None`` function.
PLUGINS: list[str] = [
    "sharedml.standalone.job",
    "sharedml.demo",
    "sharedml.components.cli",
    "sharedml.platform.cli",
    "sharedml.platform.deployment_cli",
    "sharedml.tee.cli",
    "sharedml.serving.cli",
    "sharedml.modelpart.cli",
]


@pki_app.command("init")
def pki_init(directory: Path) -> None:
    """Create the deployment CA in DIRECTORY (ca.pem, ca.key mode 0600)."""
    from sharedml.crypto import pki

    path = pki.init_ca(directory)
    typer.echo(f"created CA {path}")


@pki_app.command("issue")
def pki_issue(directory: Path, name: str, days: int = typer.Option(365, min=1)) -> None:
    """Issue a certificate whose subject is the party id NAME."""
    from sharedml.crypto import pki

    pki.issue(directory, name, days=days)
    typer.echo(f"issued {directory / (name + '.pem')} and {directory / (name + '.key')}")


def _load_plugins() -> None:
    for module in PLUGINS:
        importlib.import_module(module).register(app)


def main() -> None:
    """Entry point: run the CLI, turning sharedml errors into one clear line."""
    _load_plugins()
    try:
        app()
    except SharedMLError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
