"""One party's part of a model version, as the serving processes hold it.

The loader seam of online scoring: :class:`StoreParts` loads this party's
sealed part of a registered model version from its node's part store
(:meth:`sharedml.modelpart.PartStore.load` — the loader batch scoring uses
too, which refuses a part of any other version) and :func:`serving_part`
turns it into a :class:`LabelPart` (at the label holder's gateway) or a
:class:`FeaturePart` (at a partner's serving node). Everything after it is
pure numpy (:mod:`sharedml.serving.scoring`). Each part carries the feature
pipeline its party fitted during training (:attr:`Part.pipeline`), which
:mod:`sharedml.serving.features` replays on the party's own rows.

Versions are named by their registry id (32 hex digits); with a registry
(``sharedml run``'s models folder, or the platform's) ``NAME@ALIAS`` and ``NAME@N`` resolve to
it, and the registry's fingerprint of every party's part is checked: this
party's when it loads, each partner's when the gateway switches to the
version.

A part never holds another party's parameters: a partner's linear part is its
own scaler and coefficients; its tree part is its split table (feature and
threshold per record id). The label holder's tree part holds the trees, which
name splits only as ``(owner party, record id)``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sharedml.errors import ConfigError, DataError, SharedMLError
from sharedml.modelpart.pipeline import FeaturePipeline
from sharedml.session import DEFAULT_FRAC_BITS

if TYPE_CHECKING:
    from sharedml.modelpart import ModelPart, PartStore
    from sharedml.serving.versions_source import VersionBook

#: Contribution kinds on the wire: ring-encoded partial scores, packed split sides.
LINEAR, TREES = 1, 2
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
_UID = re.compile(r"^[0-9a-f]{32}$")
STEP = "serve: load"


def check_version_name(name: str) -> str:
    if not isinstance(name, str) or not _VERSION_NAME.match(name):
        raise ConfigError(
            f"invalid model version name {name!r}",
            step="serve: versions",
            remedy="use 1-128 letters, digits, '_', '.', '@', '+' or '-'",
        )
    return name


@dataclass(frozen=True)
class PartInfo:
    """What a part says about itself (public between the serving parties)."""

    version: str
    party: str
    kind: int
    fingerprint: str
    n_features: int
    #: trees: split records this party owns; linear: 0
    records: int

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "party": self.party, "kind": self.kind,
            "fingerprint": self.fingerprint, "n_features": self.n_features,
            "records": self.records,
        }


class Part(ABC):
    """A loaded part and the feature pipeline its party fitted (``None``: raw columns)."""

    info: PartInfo
    pipeline: FeaturePipeline | None = None


class FeaturePart(Part):
    """A partner's part: it computes its contribution for rows of its own features."""

    @abstractmethod
    def contribute(self, X: np.ndarray) -> np.ndarray:
        """Linear: ``(n,)`` uint64 ring-encoded partial scores; trees: ``(n, ceil(R/8))``
        uint8, bit ``r`` set where record ``r``'s split sends the row left."""


class LabelPart(Part):
    """The label holder's part: it combines its own rows with the partners' answers."""

    partners: tuple[str, ...]
    task: str

    @abstractmethod
    def combine(self, X: np.ndarray, answers: dict[str, np.ndarray]) -> np.ndarray:
        """Scores of the rows of ``X`` given each partner's contribution for them."""

    @abstractmethod
    def check_partner(self, info: PartInfo) -> str | None:
        """Why the partner's part cannot serve with this one, or ``None``."""


def serving_part(part: ModelPart) -> FeaturePart | LabelPart:
    """The serving form of one party's sealed model part (linear or SecureBoost)."""
    from sharedml.serving import scoring

    model, kind = part.model, part.header.kind
    if kind in ("SSLogisticRegression", "SSLinearRegression", "HELogisticRegression"):
        if getattr(model, "coef_", None) is None:
            raise ConfigError(
                f"this party's part of {part.uid} keeps its weights secret-shared "
                "(reveal_weights: none); online scoring needs each party's own coefficients",
                party=part.header.party, step=STEP,
                remedy="train with reveal_weights: own to serve the model online")
        frac_bits = int(getattr(model, "frac_bits_", None) or DEFAULT_FRAC_BITS)
        served = scoring.linear_part(model, part.uid, part.fingerprint, frac_bits)
    elif kind in ("SecureBoostClassifier", "SecureBoostRegressor"):
        served = scoring.tree_part(model, part.uid, part.fingerprint)
    else:
        raise DataError(f"model version {part.uid} is a {kind}, which online serving does "
                        "not score", party=part.header.party, step=STEP,
                        remedy="serve a linear (SS-LR, HE-LR, SS linear regression) or "
                        "SecureBoost model; score the others with a batch job")
    served.pipeline = part.pipeline
    return served


class StoreParts:
    """This party's served versions, loaded from its node's part store.

    Args:
        store: the node's :class:`~sharedml.modelpart.PartStore` (its sealed parts).
        registry: a models folder's registry or the platform's
            (:mod:`~sharedml.serving.versions_source`), to resolve ``NAME@ALIAS`` and
            check fingerprints; without it versions are named by id only.

    Parts are loaded once and kept (versions are immutable).
    """

    def __init__(self, store: PartStore, registry: VersionBook | None = None) -> None:
        self.store, self.registry = store, registry
        self.party = str(store.party)
        self._loaded: dict[str, FeaturePart | LabelPart] = {}

    def resolve(self, ref: str) -> str:
        """The version id ``ref`` names (an id, or ``NAME@ALIAS`` / ``NAME@N``)."""
        if _UID.match(ref):
            return ref
        if self.registry is None:
            raise ConfigError(f"{ref!r} is not a model version id and this process has no "
                              "registry to resolve it", party=self.party, step="serve: versions",
                              remedy="name the version by its id, or pass --models DIR")
        return self.registry.resolve_text(ref).uid

    def fingerprints(self, uid: str) -> dict[str, str]:
        """Each party's registered part fingerprint of ``uid`` ({} without a registry)."""
        if self.registry is None:
            return {}
        return self.registry.resolve_text(uid).fingerprints

    def get(self, version: str) -> FeaturePart | LabelPart:
        part = self._loaded.get(version)
        if part is None:
            uid = self.resolve(version)
            expected = self.fingerprints(uid).get(self.party)
            try:
                part = serving_part(self.store.load(uid, expected))
            except SharedMLError as exc:  # an installation problem, not a bad request
                raise ConfigError(exc.message, party=exc.party or self.party, step=STEP,
                                  remedy=exc.remedy) from None
            self._loaded[version] = part
        return part
