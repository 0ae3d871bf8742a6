"""``sharedml run JOB``: the command only; the job runner (pandas, the components)
is imported when the command runs, so every other command starts without it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def register(app: Any) -> None:
    """Add ``sharedml run`` to the CLI."""
    import typer

    @app.command("run")
    def run_command(
        job: Path = typer.Argument(..., help="job spec (YAML or JSON)"),
        out: Path = typer.Option(Path("out"), "--out", help="folder for result.json and models"),
        embedded: bool = typer.Option(
            False, "--embedded", help="run the parties as threads in this process"
        ),
        timeout: float = typer.Option(600.0, help="seconds a party waits for a peer's message"),
        step_timeout: float = typer.Option(
            3600.0, "--step-timeout", help="seconds each step may take before the run fails"
        ),
        models: Path | None = typer.Option(
            None, "--models", help="models folder: registry and each party's sealed parts "
            "(default OUT/models)"),
    ) -> None:
        """Run JOB with every party as a local process; write OUT/result.json."""
        from rich.console import Console
        from rich.table import Table

        from sharedml.standalone.job import run_job
        from sharedml.standalone.options import PartyFailed

        try:
            result = run_job(job, out, embedded=embedded, timeout=timeout,
                             step_timeout=step_timeout, models=models)
        except PartyFailed as exc:
            for line in exc.lines():  # the root cause first, what followed from it after
                typer.echo(line, err=True)
            raise typer.Exit(2) from None
        table = Table(title=f"job {result['job']} ({result['seconds']} s)")
        for col in ("step", "party", "seconds", "metrics"):
            table.add_column(col)
        for step in result["steps"]:
            for party, r in step["parties"].items():
                shown = {k: v for k, v in r["metrics"].items() if not isinstance(v, list | dict)}
                table.add_row(step["id"], party, f"{r['seconds']:.2f}", json.dumps(shown))
        Console().print(table)
        for m in result.get("models", []):
            typer.echo(f"registered model {m['name']}@{m['version']} ({m['uid']})")
        typer.echo(f"wrote {Path(out) / 'result.json'}")
