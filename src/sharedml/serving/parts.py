"""One party's part of a model, as the serving processes hold it.

The loader seam of online scoring: :func:`load_part` turns one party's model
file into a :class:`LabelPart` (at the label holder's gateway) or a
:class:`FeaturePart` (at a partner's serving node), and
:class:`DirectoryParts` finds a version's file by name. Everything after it
is pure numpy (:mod:`sharedml.serving.scoring`); replacing the file reader by
the model registry's loader changes this module only.

A part never holds another party's parameters: a partner's linear part is its
own scaler and coefficients; its tree part is its split table (feature and
threshold per record id). The label holder's tree part holds the trees, which
name splits only as ``(owner party, record id)``.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sharedml.errors import ConfigError, DataError
from sharedml.session import DEFAULT_FRAC_BITS

#: Contribution kinds on the wire: ring-encoded partial scores, packed split sides.
LINEAR, TREES = 1, 2
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")


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
    """A loaded part; ``feature_names`` is ``None`` when the file does not name them."""

    info: PartInfo
    feature_names: list[str] | None


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


def fingerprint(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read model file {path}: {exc}", step="serve: load") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path} is not a sharedml model file", step="serve: load")
    return doc


def load_part(path: Path, version: str) -> FeaturePart | LabelPart:
    """The serving part in one party's model file (linear or SecureBoost)."""
    from sharedml.serving import scoring

    path = Path(path)
    doc = _read(path)
    digest = fingerprint(path)
    if doc.get("format") == "sharedml.linear":
        frac_bits = int(doc.get("part", {}).get("frac_bits") or DEFAULT_FRAC_BITS)
        return scoring.linear_part(_linear_model(doc, path), version, digest, frac_bits)
    if doc.get("format") == "sharedml.secureboost":
        return scoring.tree_part(_tree_model(doc, path), version, digest)
    raise DataError(
        f"{path} holds format {doc.get('format')!r}, which online serving does not score",
        step="serve: load",
        remedy="serve a linear or SecureBoost model part written by a train step",
    )


def _linear_model(doc: dict[str, Any], path: Path) -> Any:
    from sharedml.learn.linear.he import HELogisticRegression
    from sharedml.learn.linear.ss import SSLinearRegression, SSLogisticRegression

    classes = {c.model_type: c for c in (SSLogisticRegression, SSLinearRegression,
                                         HELogisticRegression)}
    cls = classes.get(str(doc.get("model_type")))
    if cls is None:
        raise DataError(f"{path} holds an unknown linear model {doc.get('model_type')!r}",
                        step="serve: load")
    model = cls.load(path)
    if getattr(model, "coef_", None) is None:
        raise ConfigError(
            f"{path} keeps its weights secret-shared (reveal_weights: none); online "
            "scoring needs each party's own coefficients",
            party=model.party_,
            step="serve: load",
            remedy="train with reveal_weights: own to serve the model online",
        )
    return model


def _tree_model(doc: dict[str, Any], path: Path) -> Any:
    from sharedml.learn.tree.secureboost import SecureBoostClassifier, SecureBoostRegressor

    classes = {c.__name__: c for c in (SecureBoostClassifier, SecureBoostRegressor)}
    cls = classes.get(str(doc.get("kind")))
    if cls is None:
        raise DataError(f"{path} holds an unknown tree model {doc.get('kind')!r}",
                        step="serve: load")
    return cls.load(path)


class DirectoryParts:
    """A party's served versions: ``ROOT/<version>.json``, one part file each.

    Parts are loaded once and kept (versions are immutable); ``party`` is
    checked against the file so a misplaced part is refused at load.
    """

    def __init__(self, root: Path, party: str) -> None:
        self.root = Path(root)
        self.party = party
        self._loaded: dict[str, FeaturePart | LabelPart] = {}

    def path(self, version: str) -> Path:
        return self.root / f"{check_version_name(version)}.json"

    def get(self, version: str) -> FeaturePart | LabelPart:
        part = self._loaded.get(version)
        if part is None:
            path = self.path(version)
            if not path.is_file():
                raise ConfigError(
                    f"model version {version!r} is not installed at party {self.party!r}",
                    party=self.party,
                    step="serve: load",
                    remedy=f"copy this party's part of {version!r} to {path}",
                )
            part = load_part(path, version)
            if part.info.party != self.party:
                raise ConfigError(
                    f"{path} is party {part.info.party!r}'s part, not {self.party!r}'s",
                    party=self.party,
                    step="serve: load",
                )
            self._loaded[version] = part
        return part
