"""``sharedml demo``: the standard's A.1 credit-risk scenario, end to end.

A bank (the label — did the customer default — and five features of its own)
and a partner (four behavioural features of partly the same customers) train
two models together without showing each other a row: each party is its own
process and they talk only over gRPC with mutual TLS, plus a dealer process
that holds no data and hands out the randomness secret sharing needs. The job
(:func:`sharedml.scenarios.a1.job_spec`) runs through
:func:`sharedml.standalone.job.run_job`, the same path as ``sharedml run``. Afterwards the demo trains the same models in
the clear — on the joined data, which neither party could do, and on the
bank's columns alone — and prints the comparison.

``sharedml demo --transport-check`` keeps the first demo: two processes
exchange a large array over mutual TLS and check its digest (:func:`exchange`,
written against the Channel seam so it also runs under
:func:`sharedml.standalone.threads.run_in_threads`).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer

from sharedml.errors import ProtocolAbort
from sharedml.session import Session

if TYPE_CHECKING:
    from sharedml.scenarios.a1 import Settings
    from sharedml.standalone.job import ProgressFn

#: Bytes each party sends in the transport check unless told otherwise.
DEFAULT_BYTES = 64 << 20

#: What each step does, for the progress bars.
STEP_LABELS = {
    "psi": "match customer ids (KKRT PSI)",
    "split": "70/30 split, stratified",
    "scale": "standardise own columns",
    "train_lr": "logistic regression, secret-shared",
    "predict_lr": "score hold-out rows",
    "evaluate_lr": "AUC / KS at the bank",
    "train_sb": "SecureBoost, secret-shared",
    "predict_sb": "score hold-out rows",
    "evaluate_sb": "AUC / KS at the bank",
}

PROCESSES = (
    "Each runs as its own process; they talk only over gRPC with mutual TLS (certificates "
    "from a fresh CA). "
)
THREADS = "Each runs as a thread of this process (--embedded), talking through in-memory queues. "
WIRE = (
    "[bold]What crosses the wire:[/] masked ids (each side learns which "
    "customers both hold, nothing about the others); which rows are test rows; random-looking "
    "secret shares; for the trees, sums of gradients per feature bin and which side of each "
    "split a customer goes, to the bank; the final scores, to the bank only. [bold]Never:[/] a "
    "feature value, a label or a row. Each party keeps its own part of each model (its "
    "coefficients; its split thresholds)."
)


@dataclass
class A1Outcome:
    """What the demo measured: the job's result and the comparison rows."""

    result: dict[str, Any]
    shared: dict[str, dict[str, float]]
    reference: dict[str, dict[str, dict[str, float]]]
    train_seconds: dict[str, float]
    seconds: float
    out: Path


def run_a1(
    out: Path,
    *,
    data: str = "credit",
    rows: int = 20_000,
    settings: Settings | None = None,
    embedded: bool = False,
    progress: ProgressFn | None = None,
) -> A1Outcome:
    """Write the scenario's data and job under ``out``, run it, train the references."""
    from sharedml.scenarios import a1
    from sharedml.standalone.job import run_job_reporting_cause as run_job

    s = settings or a1.Settings()
    start = time.perf_counter()
    pair = a1.scenario(data, rows)
    bank_csv, partner_csv = pair.write(out / "data")
    spec = a1.job_spec(pair, f"data/{bank_csv.name}", f"data/{partner_csv.name}", s)
    result = run_job(spec, out, embedded=embedded, base=out, progress=progress)
    steps = {step["id"]: step["parties"] for step in result["steps"]}
    shared = {k: steps[ids[2]]["bank"]["metrics"] for k, ids in a1.MODELS.items()}
    train_seconds = {k: steps[ids[0]]["bank"]["seconds"] for k, ids in a1.MODELS.items()}
    test_ids = a1.holdout_ids(steps["predict_lr"]["bank"]["artifacts"]["predictions"], pair.id_column)
    reference = a1.reference_metrics(pair, test_ids, s)
    return A1Outcome(result, shared, reference, train_seconds, time.perf_counter() - start, out)


def comparison_table(outcome: A1Outcome) -> Any:
    """The rich table: each shared model beside the plaintext model and the bank alone."""
    from rich.table import Table

    from sharedml.scenarios.a1 import MODEL_NAMES

    table = Table(
        title="hold-out AUC and KS",
        caption="pooled: the same model trained in the clear on the joined data (which no "
        "party can do); bank: the same model on the bank's own columns",
    )
    table.add_column("model")
    for col in ("AUC\nshared", "AUC\npooled", "AUC\nbank", "KS\nshared", "KS\npooled",
                "KS\nbank", "train\nseconds"):
        table.add_column(col, justify="right")
    for key, name in MODEL_NAMES.items():
        sh, ref = outcome.shared[key], outcome.reference[key]
        table.add_row(
            name,
            *(f"{v:.4f}" for v in (sh["auc"], ref["joined"]["auc"], ref["bank"]["auc"])),
            *(f"{v:.3f}" for v in (sh["ks"], ref["joined"]["ks"], ref["bank"]["ks"])),
            f"{outcome.train_seconds[key]:.1f}",
        )
    return table


class _Bars:
    """One rich progress bar per step; a step's bar is the mean of the data parties' fractions."""

    def __init__(self, progress: Any, step_ids: list[str], parties: tuple[str, ...]) -> None:
        self._progress = progress
        self._parties = parties
        self._tasks = {
            sid: progress.add_task(f"{sid:<12} {STEP_LABELS.get(sid, '')}", total=1.0)
            for sid in step_ids
        }
        self._done: dict[tuple[str, str], float] = {}

    def __call__(self, party: str, step: str, fraction: float, message: str) -> None:
        if party not in self._parties or step not in self._tasks:
            return  # the dealer reports nothing; unknown steps are ignored
        self._done[(party, step)] = max(self._done.get((party, step), 0.0), float(fraction))
        mean = sum(self._done.get((p, step), 0.0) for p in self._parties) / len(self._parties)
        self._progress.update(self._tasks[step], completed=mean)


def _print_story(console: Any, data: str, rows: int, embedded: bool) -> None:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    from sharedml.scenarios import a1

    pair = a1.scenario(data, min(rows, 50))
    bank_cols = [c for c in pair.bank.columns if c not in (pair.id_column, pair.label)]
    partner_cols = [c for c in pair.partner.columns if c != pair.id_column]
    label = "malignant or not" if data == "breast" else "did the customer default within a year"
    who = Table.grid(padding=(0, 2))
    who.add_column(style="cyan")
    who.add_column()
    who.add_row("bank", f"the label ({label}) and {len(bank_cols)} features: "
                f"{', '.join(bank_cols[:6])}")
    kind = "another hospital" if data == "breast" else "an e-commerce firm"
    who.add_row("partner", f"{kind}: {len(partner_cols)} features of partly the "
                f"same customers: {', '.join(partner_cols[:6])}")
    who.add_row("dealer", "no data; hands out the random numbers secret sharing needs "
                "(it must not collude with either party)")
    console.print(Panel(
        Group("[bold]Two organisations, one model, no data shared.[/]", "", who, "",
              (THREADS if embedded else PROCESSES) + WIRE),
        title="sharedml demo — A.1 credit risk" + (
            " (on scikit-learn's breast-cancer set)" if data == "breast" else ""),
    ))


def _demo(
    console: Any, out: Path, data: str, rows: int, settings: Settings, embedded: bool
) -> A1Outcome:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from sharedml.scenarios.a1 import MODELS

    step_ids = ["psi", "split", "scale", *[s for ids in MODELS.values() for s in ids]]
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bars = _Bars(progress, step_ids, ("bank", "partner"))
        return run_a1(out, data=data, rows=rows, settings=settings, embedded=embedded,
                      progress=bars)


def _report(console: Any, outcome: A1Outcome, keep: bool) -> None:
    lr, sb = outcome.shared["lr"], outcome.shared["sb"]
    ref = outcome.reference
    console.print(comparison_table(outcome))
    console.print(
        f"Together the two parties reach AUC {lr['auc']:.3f} (logistic regression) and "
        f"{sb['auc']:.3f} (trees), against {ref['lr']['bank']['auc']:.3f} and "
        f"{ref['sb']['bank']['auc']:.3f} for the bank alone; the shared models are within "
        f"{abs(lr['auc'] - ref['lr']['joined']['auc']):.3f} and "
        f"{abs(sb['auc'] - ref['sb']['joined']['auc']):.3f} AUC of pooling the data in the clear."
    )
    where = f"results and each party's model files in {outcome.out}" if keep else (
        "pass --out DIR to keep the result file and each party's model files")
    console.print(f"[bold green]done in {outcome.seconds:.1f} s[/] — {where}")


# -- the transport check (the first demo) ----------------------------------------------------
def exchange(session: Session, nbytes: int = DEFAULT_BYTES) -> dict[str, Any]:
    """Send every peer an array and its digest; check and confirm what arrives.

    Steps: 1. draw ``nbytes`` bytes of float64 from the session's
    (non-secret) generator; 2. send the array and its SHA-256 to each peer;
    3. receive each peer's array and digest, recompute and compare;
    4. tell each peer whether its array arrived intact, and hear the same back.

    Reveals: the arrays themselves (this is a transport check, not a protocol).
    """
    mine = session.rng("demo").random(max(nbytes // 8, 1))
    digest = hashlib.sha256(mine.data).digest()
    channel = session.channel.scope("demo")
    start = time.perf_counter()
    for peer in session.others:
        channel.send(peer, "array", mine)
        channel.send(peer, "digest", digest)
    received: dict[str, dict[str, Any]] = {}
    for peer in session.others:
        theirs = channel.recv(peer, "array")
        claimed = channel.recv(peer, "digest")
        if not isinstance(theirs, np.ndarray) or not isinstance(claimed, bytes):
            raise ProtocolAbort(f"{peer!r} sent the wrong kinds of value", party=session.party)
        ok = hashlib.sha256(theirs.data).digest() == claimed
        channel.send(peer, "verdict", b"ok" if ok else b"corrupt")
        received[peer] = {"bytes": theirs.nbytes, "sha256": claimed.hex()[:16], "intact": ok}
    confirmed = {peer: channel.recv(peer, "verdict") == b"ok" for peer in session.others}
    return {
        "party": session.party,
        "sent_bytes": mine.nbytes * len(session.others),
        "sha256": digest.hex()[:16],
        "received": received,
        "confirmed_by_peers": confirmed,
        "seconds": time.perf_counter() - start,
    }


def run_transport_check(
    nbytes: int = DEFAULT_BYTES, parties: tuple[str, ...] = ("bank", "partner")
) -> dict[str, Any]:
    """Run :func:`exchange` with each party in its own process over mutual TLS."""
    from sharedml.standalone.processes import run_in_processes

    return run_in_processes(
        partial(exchange, nbytes=nbytes), parties, job="demo"
    )


def _transport_check(console: Any, megabytes: int) -> None:
    from rich.table import Table

    console.print(
        "[bold]transport check[/]: parties [cyan]bank[/] and [cyan]partner[/] as separate "
        "processes, with certificates from a fresh CA, talking gRPC over mutual TLS on loopback"
    )
    results = run_transport_check(megabytes << 20)
    table = Table(title="what each party did")
    for col in ("party", "sent", "sha256 sent", "received from", "sha256 received", "intact",
                "peer confirmed", "seconds"):
        table.add_column(col)
    all_ok = True
    for party, res in results.items():
        for peer, got in res["received"].items():
            confirmed = res["confirmed_by_peers"][peer]
            all_ok &= got["intact"] and confirmed
            table.add_row(party, f"{res['sent_bytes'] / 2**20:.0f} MiB", res["sha256"], peer,
                          got["sha256"], "yes" if got["intact"] else "[red]NO[/]",
                          "yes" if confirmed else "[red]NO[/]", f"{res['seconds']:.2f}")
    console.print(table)
    if not all_ok:
        console.print("[bold red]an array arrived corrupted[/]")
        raise typer.Exit(1)
    console.print("[bold green]both arrays arrived intact; both parties confirmed.[/]")


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        data: str = typer.Option("credit", "--data", help="credit (generated) or breast"),
        rows: int = typer.Option(20_000, "--rows", min=200, help="customers in the credit book"),
        trees: int = typer.Option(10, "--trees", min=1, max=200, help="SecureBoost trees"),
        epochs: int = typer.Option(5, "--epochs", min=1, max=200, help="logistic regression epochs"),
        out: Path | None = typer.Option(None, "--out", help="keep results and model files here"),
        embedded: bool = typer.Option(False, "--embedded", help="parties as threads, not processes"),
        write_data: Path | None = typer.Option(
            None, "--write-data", help="only write the scenario's two CSV files to this folder"
        ),
        transport_check: bool = typer.Option(
            False, "--transport-check", help="only exchange and check a large array over mTLS"
        ),
        megabytes: int = typer.Option(
            64, "--megabytes", "-m", min=1, max=4096, help="transport check: MiB each party sends"
        ),
    ) -> None:
        """A bank and a partner train shared credit-risk models (standard A.1) and compare them."""
        from rich.console import Console

        from sharedml.scenarios import a1

        console = Console()
        if transport_check:
            _transport_check(console, megabytes)
            return
        if write_data is not None:
            bank, partner = a1.scenario(data, rows).write(write_data)
            console.print(f"wrote {bank} and {partner}")
            return
        settings = a1.Settings(trees=trees, epochs=epochs)
        _print_story(console, data, rows, embedded)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            outcome = _demo(console, out, data, rows, settings, embedded)
        else:
            with tempfile.TemporaryDirectory(prefix="sharedml-demo-") as tmp:
                outcome = _demo(console, Path(tmp), data, rows, settings, embedded)
        _report(console, outcome, keep=out is not None)
