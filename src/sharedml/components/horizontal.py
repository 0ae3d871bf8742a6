"""``train``, ``predict`` and ``evaluate`` with ``layout: horizontal``: the parties hold the
same columns for different rows, and the job's helper aggregates.

Roles: every data party is a *client* of :mod:`sharedml.fl`. The
*aggregator* is the job's helper party (the one that deals randomness to
secret-shared steps: a process of ``sharedml run``, the dealer node on the
platform), which holds no data, unless the step names a data party
(``aggregator: guest``). Each step runs at the clients through
:class:`~sharedml.components.learn.TrainStep` (and its siblings) and at the
helper through their ``aggregate`` method
(:func:`sharedml.components.dealer.helper_step`); a named data party runs both
roles, each in its own thread on one view of a
:class:`~sharedml.transport.loopback.LoopbackPair` (:func:`both_roles`), and
the job needs no helper for the step.

1. *Schema.* Each client sends the aggregator its feature column names and
   task; the aggregator checks they agree and answers ``ok`` or the reason,
   naming the party that differs (all clients then stop with it).
2. *Train* (``train``): FedAvg/FedProx (:mod:`sharedml.fl.fedavg`; each
   client holds out ``validation`` of its training rows to score every
   round) for ``logistic_regression``, ``linear_regression`` and ``mlp``, or
   federated trees (:mod:`sharedml.fl.gbdt`) for ``gbdt``. Every sum is a
   round of secure aggregation (:mod:`sharedml.fl.secagg`).
3. *Outcome.* The aggregator sends every client the public figures (rounds
   run, the best round's validation metrics, who was excluded, and with DP
   ε, δ, clip and noise multiplier) or why it stopped
   (:mod:`sharedml.fl.figures`). Every client and the aggregator write the
   same model file (``format: sharedml.horizontal``).
   Each data party also seals the model as its part of a new registered
   version (:mod:`sharedml.fl.part`; ``sharedml run``'s models folder or the
   platform's registry record it as they do vertical parts).
4. *Predict* (``predict``): each client scores its own rows with the job's
   model or, with ``model: NAME@ALIAS``, with its own part of that version;
   nothing is sent but the vertical steps' load status (one record each).
5. *Evaluate* (``evaluate``): each client scores its own rows and one secure
   sum of metric statistics gives every party the pooled metrics
   (:mod:`sharedml.fl.evaluate`); predictions are never pooled.
   Steps 4 and 5 are in :mod:`sharedml.components.horizontal_use`.

Reveals: to the aggregator, the feature column names and task (metadata the
platform holds anyway), and what each protocol's docstring says (the sums
of the survivors' updates, hence every round's global model; pooled
validation and evaluation statistics; pooled histograms for trees); to the
clients, the model after every round and the public figures of step 3. A
data party that aggregates learns the same sums and nothing more of the
others (each client's message to it is masked as to the helper); knowing
its own update, it learns the sum of the others' — with two data parties,
the other's update, as the global model would tell anyway. With DP, it sees
the sum before its own noise: ε protects the parties from the model's users
and from each other's clients, not from the aggregator.
Security model: semi-honest; the aggregator colludes with fewer than the
secure aggregation's threshold of clients — a data party that aggregates is
one of them already, so the others tolerate one colluder fewer (and, when
the job also deals randomness, the helper colludes with no data party).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from sharedml.components.base import PartyConfig, StepContext, StepResult
from sharedml.components.saved_models import save_part
from sharedml.errors import ConfigError, DataError, SharedMLError
from sharedml.fl import declared
from sharedml.fl.figures import receive_figures, send_figures
from sharedml.fl.model import HorizontalModel
from sharedml.fl.part import HorizontalPart
from sharedml.fl.secagg import SecAggConfig
from sharedml.transport.base import Channel
from sharedml.transport.loopback import run_both

SCHEMA, OUTCOME = "horizontal/schema", "horizontal/outcome"
_OK = b"ok"


def aggregator_of(ctx: StepContext, params: Any) -> str:
    """The step's named data party, else the job's helper."""
    named = getattr(params, "aggregator", None)
    if named is not None:
        return str(named)
    if ctx.session.dealer is None:
        raise ConfigError(
            "a horizontal step needs the job's aggregator, and this job has none",
            party=ctx.party.name, step=ctx.step_id,
            remedy="name a data party (aggregator: NAME), or run it through 'sharedml run' or "
            "the platform (both add the helper party)",
        )
    return ctx.session.dealer


def check_parties(params: Any, parties: dict[str, PartyConfig]) -> None:
    """When the spec loads: a horizontal train or evaluate needs the label at every
    party and a secure aggregation these parties can run (two or more, the
    dropouts and SecAgg+ degree the parameters ask for)."""
    without = sorted(name for name, p in parties.items() if p.label is None)
    if without:
        raise ConfigError(f"layout: horizontal needs the label at every party; {without} "
                          "declare none", remedy="declare 'label' for every party in the spec")
    named = getattr(params, "aggregator", None)
    if named is not None and named not in parties:
        raise ConfigError(f"the aggregator {named!r} is not a party of the job",
                          remedy=f"name one of {sorted(parties)}, or none for the job's helper")
    given = params.given() if hasattr(params, "given") else {}
    declared.secagg_config(named or "aggregator", tuple(parties), given)


def both_roles(
    ctx: StepContext,
    as_client: Callable[[StepContext], StepResult],
    as_aggregator: Callable[[StepContext], StepResult],
) -> StepResult:
    """Run a step's client and aggregator sides at one data party (the aggregator
    in a thread, files under ``out_dir/aggregator``); the client's result, with
    the aggregator's exclusions and round record added."""
    folder = ctx.out_dir / "aggregator"
    folder.mkdir(mode=0o700, exist_ok=True)

    def on(channel: Channel, **changes: Any) -> StepContext:
        return replace(ctx, session=replace(ctx.session, channel=channel), **changes)

    mine, theirs = run_both(
        ctx.session.channel, lambda ch: as_client(on(ch)),
        lambda ch: as_aggregator(on(ch, state={}, out_dir=folder)), f"aggregator-{ctx.step_id}",
    )
    extra = {k: theirs.metrics[k] for k in ("excluded",) if k in theirs.metrics}
    return StepResult(metrics={**mine.metrics, **extra, "role": "client and aggregator"},
                      artifacts={**mine.artifacts, **{k: v for k, v in theirs.artifacts.items()
                                                      if k not in mine.artifacts}})


def train_here(ctx: StepContext, params: Any, X: pd.DataFrame, y: np.ndarray | None) -> StepResult:
    """A data party's part in a horizontal train: the client's, and the aggregator's too
    when the step names this party."""
    if aggregator_of(ctx, params) != ctx.party.name:
        return train_client(ctx, params, X, y)
    return both_roles(ctx, lambda c: train_client(c, params, X, y),
                      lambda c: train_aggregator(c, params))


def config_of(ctx: StepContext, params: Any, given: dict[str, Any]) -> SecAggConfig:
    try:
        return declared.secagg_config(aggregator_of(ctx, params), ctx.session.data_parties, given)
    except ConfigError as exc:
        raise ConfigError(exc.message, party=ctx.party.name, step=ctx.step_id,
                          remedy=exc.remedy) from None


def tell_schema(ctx: StepContext, server: str, columns: list[str], task: str) -> None:
    """Step 1 at a client: send the schema, raise the aggregator's reason if it differs."""
    ctx.session.channel.send(server, SCHEMA, json.dumps([task, columns]).encode())
    answer = ctx.session.channel.recv(server, SCHEMA)
    if answer != _OK:
        text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else "no answer"
        raise DataError(text, party=ctx.party.name, step=ctx.step_id,
                        remedy="give every party the same feature columns, in the same order")


def agree_schema(ctx: StepContext, clients: tuple[str, ...]) -> tuple[str, list[str]]:
    """Step 1 at the aggregator: every client's ``(task, columns)`` must be the first's."""
    seen: dict[str, tuple[str, list[str]]] = {}
    for c in clients:
        raw = ctx.session.channel.recv(c, SCHEMA)
        try:
            task, columns = json.loads(raw.decode() if isinstance(raw, bytes) else "")
            seen[c] = (str(task), [str(x) for x in columns])
        except (ValueError, TypeError):
            seen[c] = ("?", ["<malformed schema>"])
    first = clients[0]
    differ = [c for c in clients if seen[c] != seen[first]]
    reason = ""
    if differ:
        c = differ[0]
        reason = (f"party {c!r} has task {seen[c][0]} and columns {seen[c][1][:8]}, party "
                  f"{first!r} has {seen[first][0]} and {seen[first][1][:8]}")
    for c in clients:
        ctx.session.channel.send(c, SCHEMA, reason.encode() if reason else _OK)
    if reason:
        raise DataError(reason, party=differ[0], step=ctx.step_id,
                        remedy="give every party the same feature columns, in the same order")
    return seen[first]


def labels_of(ctx: StepContext, y: np.ndarray | None, task: str) -> np.ndarray:
    if y is None:
        raise DataError("horizontal training needs the label at every party", party=ctx.party.name,
                        step=ctx.step_id, remedy="declare 'label' for every party in the spec")
    y = np.asarray(y, dtype=np.float64)
    if task == "classification" and not np.isin(y, (0.0, 1.0)).all():
        raise DataError("a classification label must be 0 or 1", party=ctx.party.name,
                        step=ctx.step_id, remedy="encode the label as 0/1")
    return y


def train_client(ctx: StepContext, params: Any, X: pd.DataFrame, y: np.ndarray | None) -> StepResult:
    """Steps 1-3 at a data party: train with the others, keep and write the model."""
    task = declared.task_of(params.model, params.task)
    labels = labels_of(ctx, y, task)
    given = params.given()
    config = config_of(ctx, params, given)
    columns = [str(c) for c in X.columns]
    tell_schema(ctx, config.server, columns, task)
    values = X.to_numpy(np.float64)
    ctx.progress(0.0, f"training {params.model} (horizontal)")
    fit: Any
    if params.model == "gbdt":
        from sharedml.fl.gbdt import GbdtClient

        fit = GbdtClient(ctx.session, declared.gbdt_params(task, given), config).fit(values, labels)
        learner = None
    else:
        from sharedml.fl.fedavg import FedAvgClient

        setup = declared.fedavg_setup(params.model, task, given, config)
        train, val = _hold_out(ctx, len(labels), given.get("validation", 0.1))
        fit = FedAvgClient(ctx.session, setup).fit(values[train], labels[train], values[val],
                                                    labels[val])
        learner = setup.learner
    figures = receive_figures(ctx.session, config.server, OUTCOME)
    model = HorizontalModel(params.model, task, tuple(columns), fit, learner, given)
    ctx.state["model"], ctx.state["task"] = model, task
    ctx.state.pop("predictions_on", None)
    path = ctx.out_dir / f"model-{ctx.step_id}.json"
    model.save(path)
    part = save_part(ctx, HorizontalPart.of(model, config.clients), columns)
    ctx.progress(1.0, "trained")
    metrics = {"model": params.model, "layout": "horizontal", "rows": len(labels),
               "features": len(columns), **rounded(figures), "model_uid": part.uid,
               "fingerprint": part.fingerprint}
    return StepResult(metrics=metrics, artifacts={
        "model": str(path), "part": str(ctx.part_store().path(part.uid))})


def _hold_out(ctx: StepContext, n: int, share: float) -> tuple[np.ndarray, np.ndarray]:
    """This party's training and validation rows (a seeded draw of its own rows)."""
    order = ctx.session.rng(f"horizontal/validation/{ctx.step_id}").permutation(n)
    cut = round(n * share)
    return np.sort(order[cut:]), np.sort(order[:cut])


def train_aggregator(ctx: StepContext, params: Any) -> StepResult:
    """Steps 1-3 at the aggregator: run the rounds, tell the clients how it went."""
    given = params.given()
    config = config_of(ctx, params, given)
    task, columns = agree_schema(ctx, config.clients)
    try:
        fit, learner, figures, history = _aggregate_training(ctx, params, task, len(columns),
                                                             config)
    except SharedMLError as exc:
        send_figures(ctx.session, config.clients, OUTCOME, None, failure=exc.message)
        raise
    send_figures(ctx.session, config.clients, OUTCOME, figures)
    model = HorizontalModel(params.model, task, tuple(columns), fit, learner, given)
    path = ctx.out_dir / f"model-{ctx.step_id}.json"
    model.save(path)
    rounds = ctx.out_dir / f"rounds-{ctx.step_id}.json"
    rounds.write_text(json.dumps(history, default=str), encoding="utf-8")
    excluded = {str(r["round"]): r["excluded"] for r in history if r.get("excluded")}
    metrics = {"model": params.model, "layout": "horizontal", "role": "aggregator",
               **rounded(figures)}
    if excluded:
        metrics["excluded"] = excluded
    return StepResult(metrics=metrics, artifacts={"model": str(path), "rounds": str(rounds)})


def _aggregate_training(
    ctx: StepContext, params: Any, task: str, n_features: int, config: SecAggConfig
) -> tuple[Any, Any, dict[str, float], list[dict[str, Any]]]:
    """The model, its learner (FedAvg), the public figures and the per-round record."""
    given = params.given()
    if params.model == "gbdt":
        from sharedml.fl.gbdt import GbdtServer

        server = GbdtServer(ctx.session, declared.gbdt_params(task, given), config)
        model = server.fit(n_features)
        history = [{"round": e["round"], "excluded": {k: v for k, v in e.items() if k != "round"}}
                   for e in server.excluded]
        return model, None, {"trees": float(len(model.trees))}, history
    from sharedml.fl.fedavg import FedAvgServer

    setup = declared.fedavg_setup(params.model, task, given, config)
    result = FedAvgServer(ctx.session, setup).fit(n_features)
    figures: dict[str, float] = {"rounds": float(len(result.history)),
                                 "best_round": float(result.best_round)}
    if result.best_round >= 0:
        best = result.history[result.best_round]["metrics"]
        figures.update({f"validation_{k}": float(v) for k, v in best.items()})
    if result.dp is not None:
        figures.update({f"dp_{k}": float(v) for k, v in result.dp.items()})
    return result.params, setup.learner, figures, result.history


def rounded(figures: dict[str, float]) -> dict[str, float]:
    """Figures as the result file shows them (six decimals; the DP figures as computed)."""
    return {k: float(v) if k.startswith("dp_") else round(float(v), 6) for k, v in figures.items()}
