"""Label differential privacy for split learning: a wrapper on what the label
holder sends back (STYLE.md 13: the training loop does not branch on it).

The split MLP's label holder computes, per batch, the gradient ``du`` (one row
per sample) of the loss at the interactive layer; everything the feature
holders ever receive that depends on the labels is computed from it. With
:class:`LabelNoise`:

1. each row of ``du`` is clipped to L2 norm ``clip``;
2. Gaussian noise of standard deviation ``noise_multiplier · 2·clip`` is added
   to every entry (changing one label changes one row by at most 2·clip).

Within an epoch the batches are disjoint, so a label enters one Gaussian
mechanism per epoch; over ``epochs`` epochs :func:`epsilon` composes them
with the Rényi accountant of Google's ``dp-accounting`` (no sampling
amplification is claimed). The guarantee is label DP (Ghazi et al., NeurIPS
2021) for the feature holders' whole view of training, which is a
post-processing of the noisy rows; the early-stopping flags (one bit per
epoch, if early stopping is on) and the label holder's own view are outside it.
"""

from __future__ import annotations

import numpy as np

from sharedml.errors import ConfigError


class NoNoise:
    """The gradient leaves the label holder as it is (no label DP)."""

    def __call__(self, du: np.ndarray) -> np.ndarray:
        return du


class LabelNoise:
    """Clip every row to ``clip`` and add N(0, (2·clip·noise_multiplier)²)."""

    def __init__(self, noise_multiplier: float, clip: float, rng: np.random.Generator) -> None:
        self.noise_multiplier, self.clip, self.rng = noise_multiplier, clip, rng

    def __call__(self, du: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(du, axis=1, keepdims=True)
        clipped = du * np.minimum(1.0, self.clip / np.maximum(norms, 1e-12))
        sigma = self.noise_multiplier * 2.0 * self.clip
        return clipped + self.rng.normal(0.0, sigma, size=du.shape)


def epsilon(noise_multiplier: float, epochs: int, delta: float) -> float:
    """ε of ``epochs`` Gaussian mechanisms with this noise multiplier, at ``delta``."""
    try:
        import dp_accounting
    except ImportError:
        raise ConfigError(
            "label DP needs the dp-accounting package",
            step="fit",
            remedy="pip install 'sharedml[dp]'",
        ) from None
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier), epochs)
    return float(accountant.get_epsilon(delta))
