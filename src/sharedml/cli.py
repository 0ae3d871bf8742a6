"""The ``sharedml`` command.

Each area contributes its commands through a ``register(app)`` function in the
module listed in :data:`PLUGINS`; modules keep heavy imports inside their
command functions so ``sharedml --help`` stays fast.
"""

from __future__ import annotations

import importlib

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
console = Console(stderr=True)

#: Modules with a ``register(app: typer.Typer) -> None`` function.
PLUGINS: list[str] = [
    "sharedml.pki_cli",
    "sharedml.standalone.job",
    "sharedml.demo",
    "sharedml.components.cli",
    "sharedml.platform.cli",
    "sharedml.platform.client_cli",
    "sharedml.platform.dataset_cli",
    "sharedml.platform.deployment_cli",
    "sharedml.platform.approval_cli",
    "sharedml.tee.cli",
    "sharedml.transport.cli",
    "sharedml.serving.cli",
    "sharedml.modelpart.cli",
    "sharedml.deployment.cli",
]


def _load_plugins() -> None:
    for module in PLUGINS:
        importlib.import_module(module).register(app)


#: A named file the user gave that cannot be read or written: one line, not a traceback.
FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def main() -> None:
    """Entry point: run the CLI, turning sharedml errors and a missing or unreadable
    file into one clear line (8.3-2)."""
    _load_plugins()
    try:
        app()
    except SharedMLError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise SystemExit(2) from None
    except FILE_ERRORS as exc:
        if exc.filename is None:
            raise
        console.print(f"[bold red]error:[/] {exc.strerror}: {exc.filename} — check the path "
                      "(relative paths are from the current folder)", highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
