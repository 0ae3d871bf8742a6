"""Online scoring math against the training job's own predict (issue 12 item 5).

Each party's part is loaded from its file as a serving node loads it; the
partner's contribution and the label holder's combination reproduce the job's
predict on the 30% rows: within 1e-9 for the linear model, exactly for trees.
"""

from __future__ import annotations

import numpy as np
import pytest
from serving_harness import BANK, PARTNER, Credit, Trained

from sharedml.errors import ConfigError
from sharedml.serving.parts import LINEAR, TREES, DirectoryParts, FeaturePart, LabelPart


def _online(credit: Credit, model: Trained, ids: np.ndarray) -> np.ndarray:
    label = DirectoryParts(model.folders[BANK], BANK).get(model.version)
    partner = DirectoryParts(model.folders[PARTNER], PARTNER).get(model.version)
    assert isinstance(label, LabelPart) and isinstance(partner, FeaturePart)
    assert label.check_partner(partner.info) is None
    answer = partner.contribute(credit.block(PARTNER, ids))
    return label.combine(credit.block(BANK, ids), {PARTNER: answer})


def test_linear_scores_equal_the_training_predict(credit: Credit, linear_model: Trained):
    batch = _online(credit, linear_model, linear_model.test_ids)
    np.testing.assert_allclose(batch, linear_model.scores, rtol=0, atol=1e-9)
    for i in range(0, len(linear_model.test_ids), 997):  # one record at a time, too
        one = _online(credit, linear_model, linear_model.test_ids[i : i + 1])
        assert abs(one[0] - linear_model.scores[i]) <= 1e-9


def test_tree_scores_equal_the_training_predict_exactly(credit: Credit, tree_model: Trained):
    batch = _online(credit, tree_model, tree_model.test_ids)
    assert np.array_equal(batch, tree_model.scores)
    for i in range(0, len(tree_model.test_ids), 997):
        one = _online(credit, tree_model, tree_model.test_ids[i : i + 1])
        assert one[0] == tree_model.scores[i]


def test_a_partner_part_of_another_model_kind_is_refused(linear_model: Trained,
                                                         tree_model: Trained):
    lr = DirectoryParts(linear_model.folders[BANK], BANK).get(linear_model.version)
    sb = DirectoryParts(tree_model.folders[PARTNER], PARTNER).get(tree_model.version)
    assert isinstance(lr, LabelPart) and lr.info.kind == LINEAR and sb.info.kind == TREES
    assert "not a linear model" in (lr.check_partner(sb.info) or "")


def test_a_missing_version_names_the_party_and_the_file(linear_model: Trained):
    with pytest.raises(ConfigError, match=r"'lr-9' is not installed at party 'bank'"):
        DirectoryParts(linear_model.folders[BANK], BANK).get("lr-9")


def test_another_party_s_part_is_refused(linear_model: Trained):
    with pytest.raises(ConfigError, match=r"party 'partner''s part, not 'bank''s"):
        DirectoryParts(linear_model.folders[PARTNER], BANK).get(linear_model.version)
