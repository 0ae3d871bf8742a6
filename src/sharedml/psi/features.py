"""Feature alignment: agree on who holds which columns before any computation.

* Vertical data (:func:`agree_vertical`): each party keeps its own columns.
  Names are namespaced ``party.column``, so the feature sets are disjoint by
  construction, and exactly one party declares the label.
* Horizontal data (:func:`agree_horizontal`): every party must hold the same
  columns with the same types. Parties first compare a schema fingerprint,
  a SHA-256 over the sorted ``(name, type)`` pairs; only on a mismatch do
  they exchange their column lists to say what differs.

Reveals: column names, types and who holds the label — the metadata 8.1.1-1
lets leave a node — never a value. A fingerprint of a small, guessable
schema can be inverted by guessing; it hides nothing the metadata does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sharedml.errors import DataError
from sharedml.session import Session


def schema_fingerprint(columns: Mapping[str, str]) -> bytes:
    """SHA-256 over the sorted ``(name, type)`` pairs."""
    canon = json.dumps(sorted((str(k), str(v)) for k, v in columns.items())).encode()
    return hashlib.sha256(b"sharedml/schema/v1" + canon).digest()


def _all_gather_json(session: Session, tag: str, value: object) -> dict[str, object]:
    raw = session.channel.all_gather(tag, json.dumps(value).encode())
    return {p: json.loads(bytes(v)) for p, v in raw.items()}


def agree_horizontal(session: Session, columns: Mapping[str, str]) -> bytes:
    """Check every party holds the same columns and types; returns the shared fingerprint."""
    mine = schema_fingerprint(columns)
    prints = session.channel.all_gather("schema/fingerprint", np.frombuffer(mine, np.uint8))
    if all(bytes(np.asarray(v)) == mine for v in prints.values()):
        return mine
    listed = _all_gather_json(session, "schema/columns", {str(k): str(v) for k, v in columns.items()})
    diffs = []
    own: dict[str, str] = {str(k): str(v) for k, v in columns.items()}
    for peer, theirs in listed.items():
        if peer == session.party or not isinstance(theirs, dict):
            continue
        only_mine = sorted(set(own) - set(theirs))
        only_theirs = sorted(set(theirs) - set(own))
        types = sorted(c for c in set(own) & set(theirs) if own[c] != theirs[c])
        if only_mine or only_theirs or types:
            diffs.append(
                f"{peer!r}: missing {only_mine}, extra {only_theirs}, other types for {types}"
            )
    raise DataError(
        "horizontal parties disagree on the schema — " + "; ".join(diffs),
        party=session.party,
        step="feature alignment",
        remedy="rename, add or cast columns so every party has the same names and types",
    )


@dataclass(frozen=True)
class VerticalLayout:
    """Who holds which (namespaced) features, and who holds the label."""

    features: dict[str, list[str]]
    label_holder: str | None

    def namespaced(self, party: str, column: str) -> str:
        return f"{party}.{column}"

    @property
    def all_features(self) -> list[str]:
        return [f for p in self.features for f in self.features[p]]


def agree_vertical(
    session: Session,
    features: Sequence[str],
    label: str | None = None,
    *,
    require_label: bool = True,
) -> VerticalLayout:
    """Exchange feature names, namespace them by party and find the one label holder."""
    mine = {"features": [str(f) for f in features], "label": label is not None}
    if label is not None and label in features:
        raise DataError(
            f"label {label!r} is also listed as a feature",
            party=session.party,
            step="feature alignment",
            remedy="drop the label from the feature list",
        )
    listed = _all_gather_json(session, "vertical/features", mine)
    holders = [p for p in session.peers if isinstance(listed[p], dict) and listed[p]["label"]]  # type: ignore[index]
    if len(holders) > 1 or (require_label and not holders):
        raise DataError(
            f"vertical data needs exactly one label holder, found {holders or 'none'}",
            party=session.party,
            step="feature alignment",
            remedy="declare the label at one party only",
        )
    layout = {
        p: [f"{p}.{f}" for f in listed[p]["features"]]  # type: ignore[index]
        for p in session.peers
    }
    return VerticalLayout(layout, holders[0] if holders else None)
