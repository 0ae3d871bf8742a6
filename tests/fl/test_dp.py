"""Differential privacy on FedAvg: clipping, noise from the PRG, ε from the accountant."""

from __future__ import annotations

from pathlib import Path

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp
from scipy import stats
from sklearn.metrics import roc_auc_score

from sharedml.crypto.prg import Prg
from sharedml.errors import ConfigError
from sharedml.fl.dp import DpConfig, clip_l2, epsilon, gaussian
from sharedml.fl.fedavg import FedAvgParams
from sharedml.fl.linear import LinearLearner

from .fl_world import load, run_fedavg


def test_gaussian_noise_from_the_prg_is_standard_normal() -> None:
    draws = gaussian(Prg.fresh(), 3, 20001)
    assert draws.size == 20001
    assert stats.kstest(draws, "norm").pvalue > 1e-4
    assert not np.array_equal(draws, gaussian(Prg.fresh(), 3, 20001))


def test_clip_scales_long_updates_only() -> None:
    long = np.array([3.0, 4.0])
    np.testing.assert_allclose(clip_l2(long, 1.0), [0.6, 0.8])
    short = np.array([0.3, 0.4])
    assert clip_l2(short, 1.0) is short


def test_epsilon_is_the_accountants_for_the_composition() -> None:
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.1), 12))
    assert epsilon([1.1] * 12, 1e-5) == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
    assert epsilon([], 1e-5) == 0.0


def test_bad_dp_settings_are_refused() -> None:
    for kw in (
        {"clip": 0, "noise_multiplier": 1},
        {"clip": 1, "noise_multiplier": 0},
        {"clip": 1, "noise_multiplier": 1, "delta": 1.0},
    ):
        with pytest.raises(ConfigError):
            DpConfig(**kw)  # type: ignore[arg-type]


@pytest.mark.slow
def test_fedavg_with_dp_reports_the_accountants_epsilon(shared_data: Path) -> None:
    parts, X_test, y_test = load(shared_data, "default_credit")
    dp = DpConfig(clip=0.5, noise_multiplier=0.8, delta=1e-5)
    params = FedAvgParams(rounds=6, learning_rate=0.1)
    result, _ = run_fedavg(parts, lambda _: LinearLearner(), params, dp=dp)
    assert result.dp is not None
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(0.8), 6))
    assert result.dp["epsilon"] == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
    assert result.dp | {"epsilon": 0} == {
        "epsilon": 0,
        "delta": 1e-5,
        "clip": 0.5,
        "noise_multiplier": 0.8,
        "rounds": 6.0,
    }
    # noisy, but still a model: far above chance on the held-out test set
    auc = roc_auc_score(y_test, LinearLearner().predict(result.params, X_test))
    assert auc > 0.65


def test_a_dp_job_sums_clipped_updates_on_the_32_bit_ring_and_its_metrics_on_64() -> None:
    """Unset, ``update_bound`` is ``dp_clip`` with DP (a clipped update's values lie
    within its norm), so three banks at clip 0.5 sum updates on Z_2^32; the validation
    sums (row counts) keep 2^20 on Z_2^64, and without DP nothing changes."""
    from sharedml.fl.declared import fedavg_setup, secagg_config

    banks = ("guest", "host_1", "host_2")
    given = {"dp_clip": 0.5, "dp_noise_multiplier": 1.3}
    setup = fedavg_setup("logistic_regression", "classification", given,
                         secagg_config("agg", banks, given))
    q = setup.secagg.quantizer
    assert (q.ring_bits, q.bound) == (32, pytest.approx(0.5, rel=1e-5)) and q.bound >= 0.5
    q.check(clip_l2(np.full(1, 7.0), 0.5))  # a one-value update clipped to the norm fits
    assert (setup.metric_quantizer.ring_bits, setup.metric_quantizer.bound) == (64, 2.0**20)
    plain = secagg_config("agg", banks, {})
    assert (plain.quantizer.ring_bits, plain.bound) == (64, 2.0**20)
