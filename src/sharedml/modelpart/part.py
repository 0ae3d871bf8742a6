"""A party's part of one model version in memory: header, learner and pipeline.

:meth:`ModelPart.seal` and :meth:`ModelPart.unseal` turn it into the sealed
file of :mod:`sharedml.modelpart.format` and back; :meth:`ModelPart.features`
prepares new rows for :meth:`ModelPart.model`'s ``predict``.

The learner class is named in the header and looked up in :data:`KINDS`
(never imported from a name in a file); a new learner joins with
:func:`register_kind`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pandas as pd

from sharedml.errors import DataError, SharedMLError
from sharedml.learn.base import VerticalModel
from sharedml.modelpart.format import PartHeader, canonical, fingerprint, split_file
from sharedml.modelpart.keys import NodeKeys
from sharedml.modelpart.pipeline import FeaturePipeline

__all__ = ["KINDS", "ModelPart", "register_kind"]

#: Learner class name -> class, for the parts a node may load.
KINDS: dict[str, type[VerticalModel]] = {}
T = TypeVar("T")
_AGAIN = "the part was damaged before it was sealed; export it again from its node or train again"


def register_kind(cls: type[VerticalModel]) -> type[VerticalModel]:
    """Let model parts of learner ``cls`` be loaded (by its class name)."""
    KINDS[cls.__name__] = cls
    return cls


def _builtin_kinds() -> None:
    from sharedml.fl.part import HorizontalPart
    from sharedml.learn.linear import (
        HELogisticRegression,
        SSLinearRegression,
        SSLogisticRegression,
    )
    from sharedml.learn.nn import (
        SplitMLPClassifier,
        SplitMLPRegressor,
        SSMLPClassifier,
        SSMLPRegressor,
    )
    from sharedml.learn.tree import SecureBoostClassifier, SecureBoostRegressor

    for cls in (SSLogisticRegression, HELogisticRegression, SSLinearRegression,
                SecureBoostClassifier, SecureBoostRegressor, SSMLPClassifier, SSMLPRegressor,
                SplitMLPClassifier, SplitMLPRegressor, HorizontalPart):
        register_kind(cls)


_builtin_kinds()


@dataclass(frozen=True)
class ModelPart:
    """One party's part of one model version.

    Attributes:
        header: the public metadata (:class:`~sharedml.modelpart.format.PartHeader`).
        model: this party's fitted learner part; ``predict(session, X)`` runs
            the joint prediction with the other parties' parts.
        pipeline: this party's input schema, fitted transforms and feature order.
        body: the plaintext body as a document (what the fingerprint hashes).
    """

    header: PartHeader
    model: VerticalModel
    pipeline: FeaturePipeline
    body: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def uid(self) -> str:
        return self.header.model_uid

    @property
    def fingerprint(self) -> str:
        return self.header.fingerprint

    def features(self, frame: pd.DataFrame, id_columns: Any = ("id",), *,
                 step: str | None = None) -> pd.DataFrame:
        """New rows of this party as the model's feature frame (schema checked, the
        party's fitted transforms applied, columns in the model's order)."""
        return self.pipeline.features_of(frame, id_columns, party=self.header.party, step=step)

    @classmethod
    def build(cls, model: VerticalModel, pipeline: FeaturePipeline, *, model_uid: str,
              party: str, job: str, step: str, now: dt.datetime | None = None) -> ModelPart:
        """A new part of a freshly trained ``model`` (its fingerprint computed here)."""
        parties, label_holder = roles(model)
        body = _body(model, pipeline, model_uid, party, salt=secrets.token_hex(32))
        header = PartHeader(
            model_uid=model_uid, party=party, parties=parties, label_holder=label_holder,
            kind=type(model).__name__, task=str(getattr(model, "task", "classification")),
            job=job, step=step,
            created_at=(now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
            fingerprint=fingerprint(canonical(body)),
        )
        return cls(header, model, pipeline, body)

    def body_bytes(self) -> bytes:
        """The canonical plaintext body (what the fingerprint hashes)."""
        if not self.body:
            raise DataError("this model part was not built or opened from a file")
        return canonical(self.body)

    def seal(self, keys: NodeKeys) -> bytes:
        """The part file: header in clear, body sealed with the node's at-rest key."""
        prefix = self.header.prefix()
        return prefix + keys.seal(self.body_bytes(), aad=prefix)

    @classmethod
    def unseal(cls, blob: bytes, keys: NodeKeys, where: str = "model part") -> ModelPart:
        """Open a part file (seal, fingerprint and ids checked; see the format)."""
        header, prefix, sealed = split_file(blob, where)
        return cls.from_body(header, keys.open(sealed, aad=prefix), where)

    @classmethod
    def from_body(cls, header: PartHeader, body: bytes, where: str) -> ModelPart:
        """The part whose plaintext body is ``body``, checked against ``header``."""
        if fingerprint(body) != header.fingerprint:
            raise DataError(f"{where}: the body's fingerprint {fingerprint(body)[:19]}… is not "
                            f"the header's {header.fingerprint[:19]}…",
                            remedy="the file was altered; export it again from its node")
        doc = _document(body, where)
        if doc.get("model_uid") != header.model_uid or doc.get("party") != header.party:
            raise DataError(f"{where}: the body belongs to model {doc.get('model_uid')!r} of "
                            f"party {doc.get('party')!r}, not the header's")
        kind = KINDS.get(header.kind) if isinstance(header.kind, str) else None
        if kind is None:
            raise DataError(f"{where} holds a {header.kind!r}, which this sharedml cannot load",
                            remedy=f"known kinds: {sorted(KINDS)}")
        model = _section(lambda: kind.from_dict(doc["model"], where=where), where, "model")
        pipeline = _section(lambda: FeaturePipeline.from_dict(doc["pipeline"]), where, "pipeline")
        return cls(header, model, pipeline, doc)


def _document(body: bytes, where: str) -> dict[str, Any]:
    """The body as a JSON object, or a :class:`DataError` saying it is not one."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{where}: the body is not JSON ({type(exc).__name__})",
                        remedy=_AGAIN) from None
    if not isinstance(doc, dict):
        raise DataError(f"{where}: the body is not a JSON object", remedy=_AGAIN)
    return doc


def _section(read: Callable[[], T], where: str, name: str) -> T:
    """``read()`` — the learner or the pipeline from the body — with a damaged field
    refused as a :class:`DataError` naming the part and the section, never a crash."""
    try:
        return read()
    except SharedMLError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError,
            RecursionError) as exc:
        raise DataError(f"{where}: its {name} is damaged ({type(exc).__name__}: "
                        f"{str(exc)[:120]})", remedy=_AGAIN) from None


def roles(model: VerticalModel) -> tuple[tuple[str, ...], str]:
    """(the model's data parties, its label holder), from the learner's fitted state."""
    layout = getattr(model, "layout_", None)
    if layout is not None:
        return tuple(getattr(model, "parties_", ())), layout.label_holder
    holder = str(model.label_holder_)  # type: ignore[attr-defined]
    return (holder, *[str(p) for p in getattr(model, "feature_holders_", [])]), holder


def _body(model: VerticalModel, pipeline: FeaturePipeline, uid: str, party: str,
          salt: str) -> dict[str, Any]:
    return {"salt": salt, "model_uid": uid, "party": party, "model": model.to_dict(),
            "pipeline": pipeline.to_dict()}
