"""What ``train`` and ``predict`` do with saved model versions (:mod:`sharedml.modelpart`).

* :func:`save_part` — after ``fit``: the label holder draws the new version's
  uid and sends it to the other data parties; each party seals its own part
  with its feature pipeline in its part store.
* :func:`load_part_for` — a ``predict`` with ``model:``: each party loads its
  own part of the resolved version, checks its new rows against the part's
  schema, and all data parties exchange one status record (the uid each
  loaded and its local error, if any) so every party stops with the same
  error naming the party at fault instead of waiting on it.
* :func:`write_scores` — the label holder's scores, mode 0600; sealed with
  the node key for a saved model's batch scores.

Reveals: to the other data parties, the version uid (drawn at random) and,
on failure, the text of a party's local error (column names, never values).
"""

from __future__ import annotations

import io
import json
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sharedml.components.base import StepContext
from sharedml.errors import ConfigError, DataError, SharedMLError
from sharedml.learn.base import VerticalModel
from sharedml.modelpart import FeaturePipeline, ModelPart, write_private
from sharedml.modelpart.part import roles
from sharedml.modelpart.pipeline import STATE_OPS, STATE_SCHEMA
from sharedml.modelpart.refs import ModelRef

#: Associated data of sealed prediction outputs (``sharedml model open`` checks it).
SCORES_AAD = b"sharedml.predictions.v1"


def save_part(ctx: StepContext, model: VerticalModel, features: list[str]) -> ModelPart:
    """Seal this party's part of the model just fitted as a new version (see module doc)."""
    session = ctx.session.without_dealer()
    holder = roles(model)[1]
    if session.party == holder:
        uid = secrets.token_hex(16)
        session.channel.broadcast("model-uid", uid.encode("ascii"))
    else:
        uid = bytes(session.channel.recv(holder, "model-uid")).decode("ascii")
    schema = ctx.state.get(STATE_SCHEMA) or dict.fromkeys(features, "number")
    pipeline = FeaturePipeline(dict(schema), list(ctx.state.get(STATE_OPS, [])), features,
                               ctx.party.label)
    part = ModelPart.build(model, pipeline, model_uid=uid, party=session.party,
                           job=session.channel.job, step=ctx.step_id)
    ctx.part_store().save(part)
    return part


def load_part_for(ctx: StepContext, params: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """Load this party's part of ``params.model`` into the step state; its feature frame."""
    me = ctx.party.name
    ref = ModelRef.parse(params.model)
    if ref.uid is None:
        raise ConfigError(f"model {params.model} was not resolved to a version", party=me,
                          step=ctx.step_id, remedy="run the job with 'sharedml run' (its models "
                          "folder's registry) or through the platform, which resolve it")
    X: pd.DataFrame | None = None
    error = None
    try:
        expected = (params.fingerprints or {}).get(me) if params.fingerprints else None
        if params.fingerprints is not None and expected is None:
            raise ConfigError(f"the registry holds no part of {ref.uid} for party {me!r}")
        part = ctx.part_store().load(ref.uid, expected)
        data_parties = sorted(ctx.parties)
        if sorted(part.header.parties) != data_parties:
            raise ConfigError(f"model {ref.uid} was trained by {sorted(part.header.parties)}, "
                              f"this job's parties are {data_parties}")
        X = part.features(frame, ctx.party.id_columns, step=ctx.step_id)
    except SharedMLError as exc:
        error = {"kind": type(exc).__name__, "text": exc.message, "remedy": exc.remedy}
    _agree(ctx, ref.uid, error)  # raises at every party if one failed
    ctx.state["model"] = part.model
    ctx.state["task"] = part.header.task
    ctx.state["part"] = part
    return X  # set whenever no party failed


def _agree(ctx: StepContext, uid: str, error: dict[str, Any] | None) -> None:
    """Every data party's status; the same error at every party when one failed."""
    session = ctx.session.without_dealer()
    mine = json.dumps({"uid": uid, "error": error}).encode()
    got = {p: json.loads(bytes(v)) for p, v in
           session.channel.all_gather("model-status", mine).items()}
    for party in sorted(got):
        bad = got[party]["error"]
        if bad:
            kind = DataError if bad["kind"] == "DataError" else ConfigError
            raise kind(bad["text"], party=party, step=ctx.step_id, remedy=bad["remedy"])
    uids = {p: r["uid"] for p, r in got.items()}
    if len(set(uids.values())) != 1:
        raise ConfigError(f"the parties loaded different model versions: {uids}",
                          party=ctx.party.name, step=ctx.step_id,
                          remedy="give every party the same resolved spec")


def write_scores(ctx: StepContext, frame: pd.DataFrame, scores: Any, *, sealed: bool) -> Path:
    """The label holder's ids and scores as CSV, mode 0600; sealed with the node key
    when ``sealed`` (``predictions-<step>.csv.sealed``)."""
    out = frame[[c for c in ctx.party.id_columns if c in frame.columns]].copy()
    for name, column in score_columns(scores).items():
        out[name] = column
    data = scores_csv(out)
    path = ctx.out_dir / f"predictions-{ctx.step_id}.csv"
    if not sealed:
        return write_private(path, data)
    keys = ctx.part_store().keys
    return write_private(path.with_name(path.name + ".sealed"), keys.seal(data, aad=SCORES_AAD))


def score_columns(scores: Any) -> dict[str, np.ndarray]:
    """The score file's columns: ``score``, or one ``score_<class>`` per class
    (labels 0 .. K-1) for a multi-class model's probabilities."""
    values = np.asarray(scores)
    if values.ndim == 2 and values.shape[1] > 1:
        return {f"score_{k}": values[:, k] for k in range(values.shape[1])}
    return {"score": values.reshape(-1)}


_NEEDS_QUOTES = r'[,"\r\n]'


def scores_csv(out: pd.DataFrame) -> bytes:
    """``out`` as CSV bytes with the values ``DataFrame.to_csv(index=False)`` writes:
    Arrow's writer when no name or text value needs quoting (a million rows in under
    a second; pandas took ten), pandas' otherwise. Both write a float in its shortest
    round-trip form (Arrow writes ``1`` and ``1e-5`` where pandas writes ``1.0`` and
    ``1e-05``), so a score reads back bit for bit."""
    names = [str(c) for c in out.columns]
    table = pa.Table.from_pandas(out, preserve_index=False)
    text = [c for c in table.columns if pa.types.is_string(c.type) or
            pa.types.is_large_string(c.type)]
    simple = all(f.type == pa.float64() or f.type in (pa.string(), pa.large_string())
                 or pa.types.is_integer(f.type) for f in table.schema)
    if simple and not any(re.search(_NEEDS_QUOTES, n) for n in names) and not any(
            pc.any(pc.match_substring_regex(c, _NEEDS_QUOTES)).as_py() for c in text):
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False,
                                                        quoting_style="none"))
        return (",".join(names) + "\n").encode("utf-8") + sink.getvalue().to_pybytes()
    buf = io.StringIO()
    out.to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")
