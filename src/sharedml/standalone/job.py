"""``sharedml run JOB.yaml --out DIR``: run a job spec without a platform.

Every party of the spec runs as its own local process over mutual TLS
(:func:`~sharedml.standalone.processes.run_in_processes`), or as threads in
this process with ``--embedded``; each executes the spec's steps in order through
:func:`sharedml.components.execute`, the same path the platform's node agents
take. The result file holds only public figures: each step's metrics and
timings per party. Each party's other outputs are written under ``DIR/<party>/``.

Models: every successful ``train`` step registers a model version in the
models folder (``--models``, default ``DIR/models``;
:mod:`sharedml.standalone.models`): each party's part sealed under that
party's key there, the version's metadata and fingerprints in its
``registry.json``. A ``predict: {model: NAME@ALIAS}`` step is resolved against
that registry before any party starts (:func:`sharedml.modelpart.refs.resolve_spec`).

A spec with a secret-shared step (``protocol: ss``, unless ``provider: he``)
or a horizontal learning step gets one more party, the **dealer** (the job's
helper, :func:`dealer_main`): it holds no data, deals the correlated
randomness of every MPC runtime a step opens (:mod:`sharedml.mpc.dealer`,
which says what it may learn: nothing but its own randomness) and aggregates
the horizontal steps (:mod:`sharedml.components.horizontal`). It must not
collude with a data party. Whether a job needs one,
how it serves a step and the end-of-step marker live in
:mod:`sharedml.components.dealer`, which the platform's dealer node uses too.

The spec is parsed once, here: every party (and the dealer) is handed the
same :class:`PartyJob` (validated steps, party configurations, output folder).
With a ``progress`` callback, parties report ``(party, step, fraction,
message)`` as they go — public progress only, never data; party processes send
these tuples to the parent through a multiprocessing queue.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from sharedml.components import PartyConfig, StepContext, execute, jobspec, registry
from sharedml.components.dealer import (
    dealer_name,
    end_step_at_dealer,
    helper_role,
    helper_step,
    needs_dealer,
    takes_part,
)
from sharedml.components.jobspec import StepSpec
from sharedml.datasets import DatasetFiles
from sharedml.errors import ConfigError, SharedMLError
from sharedml.session import Session
from sharedml.standalone.models import LocalRegistry, register_models, resolve_models
from sharedml.transport.deadline import StepDeadline

ProgressFn = Callable[[str, str, float, str], None]

__all__ = [
    "PartyJob", "dealer_main", "needs_dealer", "party_main", "register", "run_job",
    "run_job_reporting_cause",
]


@dataclass(frozen=True)
class PartyJob:
    """What :func:`run_job` hands every party (and the dealer): the spec, parsed once.

    Attributes:
        steps: the spec's steps, their parameters validated.
        parties: every data party's configuration, in the spec's order.
        out: the output folder; each party writes under ``out/<party>/``.
        datasets: the parties' loader: dataset names are files relative to the
            spec's folder.
        progress: where parties report ``(party, step, fraction, message)``
            (public progress only), or ``None``.
        models: the models folder (each party's part store and keys are under
            ``models/<party>/``).
        step_timeout: seconds each step may take at a party (the dealer
            included) before it fails with a :class:`~sharedml.errors.StepTimeout`
            naming the step and the peer it waited for; ``None``: no limit
            beyond each receive's own timeout.
    """

    steps: tuple[StepSpec, ...]
    parties: dict[str, PartyConfig]
    out: Path
    datasets: DatasetFiles
    progress: ProgressFn | None = None
    models: Path | None = None
    step_timeout: float | None = None

    def for_step(self, session: Session, step_id: str) -> Session:
        """``session`` with its channel bound by the step's timeout, if any."""
        if self.step_timeout is None:
            return session
        return replace(session, channel=StepDeadline(session.channel, step_id, self.step_timeout))


def party_main(job: PartyJob, session: Session) -> dict[str, Any]:
    """One party's whole job: the steps of the spec, in order.

    Returns this party's public per-step results. With a dealer in the
    session, the last data party ends at the dealer each step whose roles name
    it (:func:`~sharedml.components.dealer.takes_part`), as on the platform.
    """
    me: PartyConfig = job.parties[session.party]
    out_dir = job.out / session.party
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # model parts, predictions
    progress = job.progress
    state: dict[str, Any] = {}
    steps: list[dict[str, Any]] = []
    parts = None if job.models is None else LocalRegistry(job.models).store(session.party)
    for step in job.steps:
        if progress:
            progress(session.party, step.id, 0.0, "started")
        component = registry.get(step.component)()
        ctx = StepContext(
            job.for_step(session, step.id), me, job.parties, state, out_dir, step.id,
            _step_progress(progress, session, step.id), job.datasets, parts,
        )
        try:
            result = execute(component, ctx, step.params)
        except SharedMLError as exc:
            raise _in_step(exc, session.party, step.id) from exc
        steps.append(
            {
                "id": step.id,
                "component": step.component,
                "seconds": round(result.seconds, 4),
                "metrics": result.metrics,
                "artifacts": result.artifacts,
            }
        )
        if session.dealer is not None and takes_part(step) and (
                session.party == list(job.parties)[-1]):
            end_step_at_dealer(session, step.id, session.dealer)
        if progress:
            progress(session.party, step.id, 1.0, "done")
    return {"steps": steps}


def _in_step(exc: SharedMLError, party: str, step_id: str) -> SharedMLError:
    """``exc`` again, its message naming the job step and the party it failed at."""
    if type(exc).__init__ is not SharedMLError.__init__:
        return exc
    where = step_id if exc.step in (None, step_id) else f"{step_id}/{exc.step}"
    return type(exc)(exc.message, party=exc.party or party, step=where, remedy=exc.remedy,
                     column=exc.column)


class _QueueProgress:
    """A progress callback for party processes: puts each report on a queue to the parent."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def __call__(self, party: str, step: str, fraction: float, message: str) -> None:
        self.queue.put((party, step, float(fraction), str(message)))


# -- the dealer (sharedml.components.dealer: shared with the platform's node agents) ----
def dealer_main(job: PartyJob, session: Session) -> dict[str, Any]:
    """The helper's whole job: for each step whose roles name it
    (:func:`~sharedml.components.dealer.takes_part`, the platform's rule), aggregate
    it if it is horizontal, then serve its MPC runtimes until the step ends; the
    other steps (psi, split, scale...) run without it.

    A step may open any number of runtimes (one per ``fit``, one per shared
    prediction, none for a data step);
    :func:`~sharedml.components.dealer.helper_step` serves them until the last
    data party's end-of-step marker. Returns public figures only, for the steps
    it aggregated or dealt to.
    """
    out_dir = job.out / session.party
    out_dir.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []
    for step in job.steps:
        if not takes_part(step):  # the step's roles do not name the helper (as on the platform)
            continue
        try:
            done = helper_step(job.for_step(session, step.id), step.id, step.component,
                               step.params, job.parties, out_dir)
        except SharedMLError as exc:
            raise _in_step(exc, session.party, step.id) from exc
        if done["metrics"]:
            steps.append({"id": step.id, "component": step.component, **done})
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
    models: str | Path | None = None,
    step_timeout: float | None = None,
) -> dict[str, Any]:
    """Run a job spec with every party local; write and return ``out/result.json``.

    ``models`` is the models folder (default ``out/models``): trained versions
    are registered there and saved models are resolved from it. ``timeout``
    bounds each receive, ``step_timeout`` each step (see :class:`PartyJob`). A
    failed run raises :class:`~sharedml.standalone.options.PartyFailed` for the
    root cause; the failures that followed from it are in its ``after``."""
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

        result: dict[str, Any] = run_tee_job(spec, out_dir, base=base, models=models)
        return result
    book = LocalRegistry(Path(models) if models is not None else out_dir / "models")
    spec = resolve_models(spec, book)
    job = PartyJob(tuple(spec.parsed_steps()), spec.party_configs(), out_dir.resolve(),
                   DatasetFiles(base), models=book.root.resolve(),
                   step_timeout=step_timeout)
    dealer = dealer_name(spec.parties, helper_role(spec)) if needs_dealer(spec) else None
    if embedded:
        from sharedml.standalone.threads import run_in_threads

        fns = _functions(replace(job, progress=progress), dealer)
        per_party = run_in_threads(fns, list(fns), job=spec.name, timeout=timeout, dealer=dealer)
    else:
        per_party = _run_processes(job, spec.name, timeout, progress, dealer)
    result = {
        "job": spec.name,
        "scheme": spec.scheme,
        "seconds": round(time.perf_counter() - start, 3),
        "steps": _merge_steps(per_party, [s.id for s in job.steps]),
    }
    result["models"] = register_models(book, spec, result["steps"])
    (out_dir / "result.json").write_text(json.dumps(result, indent=2, default=_jsonable))
    return result


def _functions(job: PartyJob, dealer: str | None) -> dict[str, Callable[[Session], Any]]:
    """Every party's function (and the dealer's, last), each bound to the parsed job."""
    fns: dict[str, Callable[[Session], Any]] = {p: partial(party_main, job) for p in job.parties}
    if dealer is not None:
        fns[dealer] = partial(dealer_main, job)
    return fns


def _run_processes(
    job: PartyJob, name: str, timeout: float, progress: ProgressFn | None, dealer: str | None
) -> dict[str, Any]:
    """Every party in its own process over mutual TLS; progress through a queue."""
    import multiprocessing

    from sharedml.standalone.processes import run_in_processes

    if progress is None:
        fns = _functions(job, dealer)
        return run_in_processes(fns, list(fns), job=name, timeout=timeout, dealer=dealer)
    queue = multiprocessing.get_context("spawn").Queue()

    def drain() -> None:
        while (item := queue.get()) is not None:
            if isinstance(item, tuple) and len(item) == 4:
                progress(*item)

    reader = threading.Thread(target=drain, name="sharedml-progress", daemon=True)
    reader.start()
    try:
        fns = _functions(replace(job, progress=_QueueProgress(queue)), dealer)
        return run_in_processes(fns, list(fns), job=name, timeout=timeout, dealer=dealer)
    finally:
        queue.put(None)  # the reader's stop sign
        reader.join(timeout=5)


def _merge_steps(per_party: dict[str, dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """One entry per step, in the spec's order: its timings and metrics at every party."""
    merged: dict[str, dict[str, Any]] = {}
    for party, res in per_party.items():
        for s in res["steps"]:
            entry = merged.setdefault(
                s["id"], {"id": s["id"], "component": s["component"], "parties": {}}
            )
            entry["parties"][party] = {
                "seconds": s["seconds"],
                "metrics": s["metrics"],
                "artifacts": s["artifacts"],
            }
    return [merged[i] for i in order if i in merged]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise ConfigError(f"step produced a metric that is not JSON: {type(value).__name__}")


def run_job_reporting_cause(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`run_job` for the command line: a party's sharedml error is raised as itself.

    Its message names the party and the step; the other parties' tracebacks,
    which :class:`~sharedml.standalone.options.PartyFailed` carries, are left out.
    """
    from sharedml.standalone.options import PartyFailed

    try:
        return run_job(*args, **kwargs)
    except PartyFailed as exc:
        if isinstance(exc.error, SharedMLError):
            raise exc.error from None
        raise


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
