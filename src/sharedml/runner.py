"""``sharedml run JOB.yaml --out DIR``: run a job spec without a platform.

Every party of the spec runs as its own local process over mutual TLS
(:func:`sharedml.cluster.run_cluster`), or as threads in this process with
``--embedded``; each executes the spec's steps in order through
:func:`sharedml.components.execute`, the same path the platform's node agents
take. The result file holds only public figures: each step's metrics and
timings per party. Each party's model part is written under ``DIR/<party>/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sharedml.components import PartyConfig, StepContext, execute, jobspec, registry
from sharedml.errors import ConfigError
from sharedml.session import Session

ProgressFn = Callable[[str, str, float, str], None]


def party_main(session: Session) -> dict[str, Any]:
    """One party's whole job: the steps of the spec, in order.

    ``session.extras`` carries ``spec`` (the job spec as a dict), ``base`` (the
    folder dataset paths are relative to) and ``out`` (the output folder).
    Returns this party's public per-step results.
    """
    spec = jobspec.load(session.extras["spec"])
    parties = spec.party_configs(Path(session.extras["base"]))
    me: PartyConfig = parties[session.party]
    out_dir = Path(session.extras["out"]) / session.party
    out_dir.mkdir(parents=True, exist_ok=True)
    progress: ProgressFn | None = session.extras.get("progress")
    state: dict[str, Any] = {}
    steps: list[dict[str, Any]] = []
    for step in spec.parsed_steps():
        if progress:
            progress(session.party, step.id, 0.0, "started")
        component = registry.get(step.component)()
        ctx = StepContext(
            session, me, parties, state, out_dir, step.id, _step_progress(progress, session, step.id)
        )
        result = execute(component, ctx, step.params)
        steps.append(
            {
                "id": step.id,
                "component": step.component,
                "seconds": round(result.seconds, 4),
                "metrics": result.metrics,
                "artifacts": result.artifacts,
            }
        )
        if progress:
            progress(session.party, step.id, 1.0, "done")
    return {"steps": steps}


def _step_progress(
    progress: ProgressFn | None, session: Session, step_id: str
) -> Callable[[float, str], None]:
    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(session.party, step_id, fraction, message)

    return report


def run_job(
    spec_source: str | Path | dict[str, Any],
    out: str | Path,
    *,
    embedded: bool = False,
    base: Path | None = None,
    timeout: float = 600.0,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Run a job spec with every party local; write and return ``out/result.json``."""
    spec = jobspec.load(spec_source)
    if base is None:
        base = Path(spec_source).resolve().parent if isinstance(spec_source, str | Path) and Path(
            spec_source
        ).exists() else Path.cwd()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if spec.scheme == "tee":
        from sharedml.tee.job import run_tee_job

        result: dict[str, Any] = run_tee_job(spec, out_dir, base=base)
        return result
    spec_dict = spec.model_dump()
    parties = list(spec.parties)
    extras: dict[str, dict[str, Any]] = {
        p: {"spec": spec_dict, "base": str(base), "out": str(out_dir.resolve())} for p in parties
    }
    if embedded:
        from sharedml.simulation import run_parties

        if progress:
            for e in extras.values():
                e["progress"] = progress
        per_party = run_parties(party_main, parties, job=spec.name, timeout=timeout, extras=extras)
    else:
        from sharedml.cluster import run_cluster

        per_party = run_cluster(party_main, parties, job=spec.name, timeout=timeout, extras=extras)
    result = {
        "job": spec.name,
        "scheme": spec.scheme,
        "seconds": round(time.perf_counter() - start, 3),
        "steps": _merge_steps(per_party),
    }
    (out_dir / "result.json").write_text(json.dumps(result, indent=2, default=_jsonable))
    return result


def _merge_steps(per_party: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per step: its timings and metrics at every party."""
    order: list[str] = []
    merged: dict[str, dict[str, Any]] = {}
    for party, res in per_party.items():
        for s in res["steps"]:
            entry = merged.setdefault(
                s["id"], {"id": s["id"], "component": s["component"], "parties": {}}
            )
            if s["id"] not in order:
                order.append(s["id"])
            entry["parties"][party] = {
                "seconds": s["seconds"],
                "metrics": s["metrics"],
                "artifacts": s["artifacts"],
            }
    return [merged[i] for i in order]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise ConfigError(f"step produced a metric that is not JSON: {type(value).__name__}")


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
        timeout: float = typer.Option(600.0, help="seconds a party waits for a peer"),
    ) -> None:
        """Run JOB with every party as a local process; write OUT/result.json."""
        from rich.console import Console
        from rich.table import Table

        result = run_job(job, out, embedded=embedded, timeout=timeout)
        table = Table(title=f"job {result['job']} ({result['seconds']} s)")
        for col in ("step", "party", "seconds", "metrics"):
            table.add_column(col)
        for step in result["steps"]:
            for party, r in step["parties"].items():
                shown = {k: v for k, v in r["metrics"].items() if not isinstance(v, list | dict)}
                table.add_row(step["id"], party, f"{r['seconds']:.2f}", json.dumps(shown))
        Console().print(table)
        typer.echo(f"wrote {Path(out) / 'result.json'}")
