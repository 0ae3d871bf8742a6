"""What the label holder and the feature holders say to each other.

The label holder drives; each feature holder runs a command loop that accepts
only the operations below, in a legal order (STYLE.md 6: out-of-order or
unknown messages raise :class:`~sharedml.errors.ProtocolAbort`). Every message
is a numpy array or bytes through the Channel's typed codec; nothing is pickled.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from sharedml.errors import ConfigError, DataError, ProtocolAbort
from sharedml.session import Session
from sharedml.transport.base import Channel

FORMAT = "sharedml.secureboost"
VERSION = 1

# Command codes (label holder -> feature holder, tag "cmd": int64 [op, arg]).
OP_BEGIN_TREE = 1  # arg: unused; the histogram backend's tree data follows
OP_HISTOGRAMS = 2  # arg: nodes; "rows" (int32 per row: node slot or -1) follows
OP_SPLIT = 3  # arg: splits; "rows" and "which" (int64 [k, 2]: feature, bin) follow
OP_DIRECTIONS = 4  # arg: 0 = training rows, 1 = validation rows; "ids" follows
OP_END = 5  # arg: how many split records the kept trees use


def send_cmd(ch: Channel, to: str, op: int, arg: int = 0) -> None:
    ch.send(to, "cmd", np.array([op, arg], dtype=np.int64))


def recv_cmd(ch: Channel, frm: str) -> tuple[int, int]:
    msg = ch.recv(frm, "cmd")
    if not isinstance(msg, np.ndarray) or msg.shape != (2,) or msg.dtype != np.int64:
        raise ProtocolAbort("malformed SecureBoost command", party=ch.party, step="cmd")
    return int(msg[0]), int(msg[1])


def pack_bits(mask: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(mask, dtype=bool), axis=-1)


def unpack_bits(bits: object, n: int, party: str, step: str) -> np.ndarray:
    if not isinstance(bits, np.ndarray) or bits.dtype != np.uint8 or bits.shape[-1] != (n + 7) // 8:
        raise ProtocolAbort("direction bits of the wrong shape", party=party, step=step)
    return np.unpackbits(bits, axis=-1, count=n).astype(bool)


def recv_rows(ch: Channel, frm: str, n: int) -> np.ndarray:
    """The label holder's node-slot-per-row vector (-1: not in a requested node)."""
    node_of_row = ch.recv(frm, "rows")
    if not isinstance(node_of_row, np.ndarray) or node_of_row.shape != (n,):
        raise ProtocolAbort("node-of-row vector of the wrong shape", party=ch.party, step="rows")
    return node_of_row.astype(np.int64)


def check_input(
    party: str, X: np.ndarray, y: np.ndarray | None, task: str, what: str
) -> tuple[np.ndarray, str | None]:
    """``X`` as float64, or the first problem with ``X``/``y`` as a message."""
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        return np.empty((0, 0)), f"{what} features are not numeric"
    if X.ndim != 2:
        return X, f"{what} features must be a 2-D array, got {X.ndim}-D"
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        return X, (
            f"{what} features hold NaN or infinity (first at row {r}, column {c}); "
            "impute or drop missing values before training"
        )
    if what == "training" and X.shape[0] > 0:
        const = np.flatnonzero(X.min(axis=0) == X.max(axis=0))
        if const.size:
            return X, f"training column(s) {const.tolist()} are constant; drop them"
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            return X, f"{what} labels must be 1-D with one per row ({len(X)}), got shape {y.shape}"
        if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
            return X, f"{what} labels must be finite numbers"
        if task == "classification" and not np.all(np.isin(y, (0, 1))):
            seen = np.unique(y)[:5].tolist()
            return X, f"{what} labels must be 0/1 for binary classification, saw {seen}"
    return X, None


def agree(
    session: Session, ch: Channel, parties: list[str], status: dict[str, Any], step: str
) -> dict[str, dict]:
    """Every data party's ``status`` at every data party; raises the same clear
    error everywhere if any party reported a problem or the parties disagree."""
    mine = json.dumps(status, sort_keys=True).encode()
    for p in parties:
        if p != session.party:
            ch.send(p, "status", mine)
    out: dict[str, dict] = {}
    for p in parties:
        v = mine if p == session.party else ch.recv(p, "status")
        try:
            out[p] = json.loads(v if isinstance(v, bytes) else v.tobytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolAbort("malformed status message", party=p, step=step) from exc
    for p, st in out.items():
        if st.get("error"):
            raise DataError(
                f"party {p!r} rejected its input: {st['error']}",
                party=p,
                step=step,
                remedy="fix that party's data and run the step again",
            )
    for key in ("n", "n_val"):
        sizes = {p: st.get(key) for p, st in out.items()}
        if len(set(sizes.values())) > 1:
            raise DataError(
                f"parties hold different numbers of {'validation ' if key == 'n_val' else ''}"
                f"rows: {sizes}",
                party=session.party,
                step=step,
                remedy="align the parties' rows (PSI) before this step",
            )
    for key in ("protocol", "task", "fingerprint"):
        values = {p: st.get(key) for p, st in out.items()}
        if len(set(map(str, values.values()))) > 1:
            raise ConfigError(
                f"parties disagree on {key}: {values}",
                party=session.party,
                step=step,
                remedy="give every party the same model settings",
            )
    return out


def model_header(kind: str, task: str, role: str) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "kind": kind, "task": task, "role": role}


def check_header(d: dict[str, Any], kind: str) -> None:
    if d.get("format") != FORMAT or d.get("kind") != kind:
        raise DataError(f"not a {kind} model file (format {d.get('format')!r})")
    if d.get("version") != VERSION:
        raise DataError(
            f"model file version {d.get('version')!r} is not supported (this release reads {VERSION})",
            remedy="retrain the model or use the release that wrote it",
        )
