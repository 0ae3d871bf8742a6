"""Online scoring math against the training job's own predict (issue 12 item 5).

Each party's sealed part is loaded from the models folder as a serving
process loads it (registry fingerprint checked), its own raw rows go through
the pipeline it fitted; the partner's contribution and the label holder's
combination reproduce the training job's predict on its 30% test rows:
within 1e-9 for the linear model, exactly for trees.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving_harness import BANK, PARTNER, Book, Trained

from sharedml.errors import ConfigError, DataError
from sharedml.serving.adapters import TableAdapter
from sharedml.serving.features import PreparedFeatures
from sharedml.serving.parts import LINEAR, TREES, FeaturePart, LabelPart, StoreParts
from sharedml.standalone.models import LocalRegistry


def _parts(models: Path, party: str) -> StoreParts:
    registry = LocalRegistry(models)
    return StoreParts(registry.store(party), registry)


def _rows(book: Book, party: str, part: LabelPart | FeaturePart) -> PreparedFeatures:
    frame = pd.read_csv(book.data[party], dtype={"id": str})
    assert part.pipeline is not None
    return PreparedFeatures(TableAdapter(frame, "id", party), part.pipeline)


def _online(book: Book, model: Trained, ids: list[str]) -> np.ndarray:
    label = _parts(book.models, BANK).get(model.ref)
    partner = _parts(book.models, PARTNER).get(model.version)
    assert isinstance(label, LabelPart) and isinstance(partner, FeaturePart)
    assert label.check_partner(partner.info) is None
    X_partner, found = _rows(book, PARTNER, partner).fetch(ids)
    X_bank, found_bank = _rows(book, BANK, label).fetch(ids)
    assert found.all() and found_bank.all()
    return label.combine(X_bank, {PARTNER: partner.contribute(X_partner)})


def test_linear_scores_equal_the_training_predict(book: Book, linear_model: Trained):
    ids = list(linear_model.test_ids)
    batch = _online(book, linear_model, ids)
    np.testing.assert_allclose(batch, linear_model.scores, rtol=0, atol=1e-9)
    for i in range(0, len(ids), 997):  # one record at a time, too
        one = _online(book, linear_model, ids[i:i + 1])
        assert abs(one[0] - linear_model.scores[i]) <= 1e-9


def test_tree_scores_equal_the_training_predict_exactly(book: Book, tree_model: Trained):
    ids = list(tree_model.test_ids)
    assert np.array_equal(_online(book, tree_model, ids), tree_model.scores)
    for i in range(0, len(ids), 997):
        assert _online(book, tree_model, ids[i:i + 1])[0] == tree_model.scores[i]


def test_a_partner_part_of_another_model_kind_is_refused(book: Book, linear_model: Trained,
                                                         tree_model: Trained):
    lr = _parts(book.models, BANK).get(linear_model.version)
    sb = _parts(book.models, PARTNER).get(tree_model.version)
    assert isinstance(lr, LabelPart) and lr.info.kind == LINEAR and sb.info.kind == TREES
    assert "not a linear model" in (lr.check_partner(sb.info) or "")


def test_a_part_of_another_version_is_refused(book: Book, linear_model: Trained,
                                              tree_model: Trained, tmp_path: Path):
    models = tmp_path / "models"
    shutil.copytree(book.models, models)
    store = LocalRegistry(models).store(PARTNER)
    shutil.copy(store.path(tree_model.version), store.path(linear_model.version))
    with pytest.raises(ConfigError) as refused:
        _parts(models, PARTNER).get(linear_model.ref)
    assert refused.value.party == PARTNER and refused.value.step == "serve: load"
    assert f"part of model version {tree_model.version}, not of {linear_model.version}" in str(
        refused.value)
    with pytest.raises(ConfigError, match="no registered model credit@9"):
        _parts(book.models, BANK).get("credit@9")


def test_a_feature_source_of_another_schema_is_refused_naming_the_column(
        book: Book, linear_model: Trained):
    part = _parts(book.models, PARTNER).get(linear_model.version)
    frame = pd.read_csv(book.data[PARTNER], dtype={"id": str}).rename(columns={"x4": "x4_v2"})
    with pytest.raises(DataError) as refused:
        PreparedFeatures(TableAdapter(frame, "id", PARTNER), part.pipeline)  # type: ignore[arg-type]
    assert refused.value.party == PARTNER
    assert "missing column(s) ['x4']" in str(refused.value) and "['x4_v2']" in str(refused.value)
