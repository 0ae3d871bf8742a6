"""What a node says about a failed step: a code, the step, the party, a column — no value, no path.

A step's failure crosses a party boundary when the node reports it to the
platform (and from there to the analyst and the audit log). The exception
itself may carry what must stay at the node: a cell value quoted by
scikit-learn or pandas (``could not convert string to float: 'maybe'``), the
dataset's absolute path, a local folder in a remedy. :func:`public_failure`
translates it at that boundary (STYLE 12, issue 14 item 4):

1. The **code** comes from the exception's class in the one tree
   (``data``, ``config``, ``peer_timeout``, ``step_timeout``...); anything
   outside the tree is ``internal`` and its text is not used at all.
2. The **message and remedy** of a sharedml error keep their words, with every
   path replaced by ``<path>`` and every quoted token that is not a public name
   (a column of the node's datasets, a party, a step or component of the job)
   replaced by ``<value>``.
3. The **column** is the error's own (``DataError(column=...)``) when it names
   one of the public names.

The full exception, traceback included, goes to the node's own log only.
Whether the platform should retry the step follows from the code: bad data or
a bad spec fails the same way again, a lost peer may not (``retry``).

Reveals: to the platform, the code, the party, the step, column names the
node already reports at hello, and the scrubbed message.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sharedml.control import DatasetRecord, TaskOrder
from sharedml.errors import (
    AttestationError,
    AuthError,
    ChannelError,
    ConfigError,
    DataError,
    FrameError,
    PeerTimeout,
    PeerUnreachable,
    PolicyDenied,
    ProtocolAbort,
    SharedMLError,
    StepTimeout,
)

#: Error class -> code, most specific first.
CODES: tuple[tuple[type[BaseException], str], ...] = (
    (StepTimeout, "step_timeout"),
    (PeerTimeout, "peer_timeout"),
    (PeerUnreachable, "peer_unreachable"),
    (FrameError, "frame"),
    (ChannelError, "peer"),
    (DataError, "data"),
    (ConfigError, "config"),
    (ProtocolAbort, "protocol"),
    (PolicyDenied, "denied"),
    (AuthError, "auth"),
    (AttestationError, "attestation"),
    (SharedMLError, "failed"),
)
#: Codes whose failure repeats on a retry: the platform fails the job at once.
FINAL = frozenset({"data", "config", "denied", "auth", "attestation"})

_PATH = re.compile(r"(?<![\w'\"])(?:~|\.{1,2})?/[^\s'\",;()\[\]]*")
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


@dataclass(frozen=True)
class PublicFailure:
    """A failed step as it may leave the node."""

    code: str
    party: str
    step: str
    message: str
    column: str | None = None
    remedy: str | None = None

    @property
    def retry(self) -> bool:
        """Whether the same step may succeed when run again."""
        return self.code not in FINAL

    def reason(self) -> str:
        """One line for the platform: ``[code] party 'p' step 's': message (column 'c') — remedy``."""
        text = f"[{self.code}] party {self.party!r} step {self.step!r}: {self.message}"
        if self.column:
            text += f" (column {self.column!r})"
        if self.remedy:
            text += f" — {self.remedy}"
        return text[:4000]


def public_failure(
    exc: BaseException, party: str, step: str, names: Collection[str]
) -> PublicFailure:
    """``exc`` as the platform may see it; ``names`` are the public names (see module doc)."""
    code = next((c for kind, c in CODES if isinstance(exc, kind)), "internal")
    if not isinstance(exc, SharedMLError):
        message = (f"the step failed inside its computation ({type(exc).__name__}); "
                   "the node's log has the details")
        return PublicFailure(code, party, step, message,
                             remedy="ask the node's operator to read its log for this step")
    keep = set(names) | {party, step}
    column = getattr(exc, "column", None)
    return PublicFailure(
        code, party, step, scrub(exc.message, keep),
        column=column if column in keep else None,
        remedy=scrub(exc.remedy, keep) if exc.remedy else None,
    )


def scrub(text: str, keep: Collection[str]) -> str:
    """``text`` with its paths and its quoted tokens that are not in ``keep`` masked."""

    def quoted(match: re.Match[str]) -> str:
        token = match.group(1) if match.group(1) is not None else match.group(2)
        if token in keep or token.split("/")[0] in keep:
            return match.group(0)
        return "<value>"

    return _PATH.sub("<path>", _QUOTED.sub(quoted, text))


def public_names(order: TaskOrder, records: Sequence[DatasetRecord]) -> set[str]:
    """Names the platform already knows: the node's datasets and their columns, the job's
    parties, datasets, labels, id columns, steps and components."""
    names = {c.name for r in records for c in r.columns} | {r.name for r in records}
    for name, p in order.parties.items():
        names.add(name)
        names.update(str(v) for k, v in p.items() if k in ("dataset", "label") and v)
        ids = p.get("id", "id")
        names.update([ids] if isinstance(ids, str) else map(str, ids))
    for step in (order.spec or {}).get("steps", []):
        if isinstance(step, dict):
            names.update(str(k) for k in step)
            names.add(str(step.get("id", "")))
    names.update({order.step_id, order.component, *order.peers})
    names.discard("")
    return names
