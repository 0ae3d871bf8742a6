"""What crossed the wire in a recorded vertical run, and checks on it (9.4-3, 9.4-8).

:func:`recorded_run` runs one model part per party (and a dealer) with every
channel wrapped in a ``RecordingChannel``; an :class:`Audit` answers questions
about the messages. A *fingerprint* of some values is every 64-bit word one of
them could travel as: its float64 bits and its ring encodings at f and 2f
fractional bits. Values near 0 or whole are left out (their words collide
with counts, row numbers and packed bits), and so are words below 2^24.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tests.learn.conftest import run_vertical

from sharedml.learn.linear._base import encode_fixed
from sharedml.mpc.material import Request
from sharedml.transport.recording import RecordingChannel, WireRecord

FRAC = 16


def fingerprint(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[(np.abs(v) > 1e-3) & (np.abs(v - np.round(v)) > 1e-6)]
    words = [v.view(np.uint64), encode_fixed(v, FRAC), encode_fixed(v, 2 * FRAC)]
    prints = np.unique(np.concatenate(words))
    return prints[prints >= np.uint64(1 << 24)]


def words_of(rec: WireRecord) -> np.ndarray:
    raw = rec.as_bytes()
    if len(raw) % 8:
        return np.empty(0, dtype=np.uint64)
    return np.frombuffer(raw, dtype=np.uint64)


@dataclass
class Audit:
    log: list[WireRecord]

    def sent(self, frm: str, to: str | None = None) -> list[WireRecord]:
        return [r for r in self.log if r.frm == frm and (to is None or r.to == to)]

    def tags(self, frm: str, to: str) -> set[str]:
        """The first part of every tag ``frm`` sent ``to``."""
        return {r.tag.split("/")[0] for r in self.sent(frm, to)}

    def carrying(
        self, frm: str, to: str, values: Any, documented: tuple[str, ...] = ()
    ) -> list[str]:
        """Tags of messages from ``frm`` to ``to`` holding a word of ``values``'
        fingerprint, except dealer requests (public row numbers) and the
        ``documented`` releases (tag endings): real numbers of the same range,
        a few of which equal some feature to 2^-16 by chance."""
        prints = fingerprint(values)
        hits = []
        for rec in self.sent(frm, to):
            if rec.tag.endswith(documented):
                continue
            if rec.tag.endswith("dealer/req"):
                Request.decode(rec.value)  # kind, counter, shapes, public rows only
                continue
            if np.intersect1d(words_of(rec), prints).size:
                hits.append(rec.tag)
        return hits

    def label_like(self, frm: str, to: str, y: np.ndarray) -> list[str]:
        """Tags of messages that look like the 0/1 label vector: the same
        length and agreeing with it on three rows in four or more (masked bits
        agree half the time), or its bytes verbatim."""
        one = np.uint64(1 << FRAC)
        hits = []
        for rec in self.sent(frm, to):
            w = words_of(rec)
            bits = w.size == y.size and (np.isin(w, [0, 1]).all() or np.isin(w, [0, one]).all())
            raw = rec.as_bytes()
            verbatim = any(
                y[:64].astype(t).tobytes() in raw for t in (np.int64, np.float64, np.uint8)
            )
            if verbatim or (bits and np.mean((w != 0) == (y != 0)) >= 0.75):
                hits.append(rec.tag)
        return hits


def recorded_run(
    make: Callable[[], Any], data: Any, *, dealer: bool = True, dealer_runs: int = 1
) -> tuple[Audit, dict[str, Any], dict[str, Any]]:
    """Fit and predict the test rows (with a dealer process unless ``dealer``
    is false: HE learners), every channel recorded; the audit, each party's
    model and output."""
    log: list[WireRecord] = []
    kept: dict[str, Any] = {}
    out = run_vertical(
        make,
        data,
        dealer=dealer,
        dealer_runs=dealer_runs,
        wrap=lambda ch: RecordingChannel(ch, log),
        keep=kept,
    )
    return Audit(log), kept, out
