"""A partner's allow-list rule: which ids its serving node will score.

A partner answers only for ids its rule admits and says "refused" for the
others (never why, never a value). Rules: ``all``; ``regex:PATTERN`` (the
whole id must match); ``prefix:A,B,...``; ``file:PATH`` (one id per line).
Checked for a whole batch at once.
"""

from __future__ import annotations

import re
from operator import methodcaller
from pathlib import Path

import numpy as np

from sharedml.errors import ConfigError


class AllowRule:
    def __init__(self, spec: str = "all") -> None:
        self.spec = spec
        kind, _, arg = spec.partition(":")
        self._pattern: re.Pattern[str] | None = None
        self._prefixes: tuple[str, ...] | None = None
        self._ids: frozenset[str] | None = None
        try:
            if kind == "regex":
                self._pattern = re.compile(arg)
            elif kind == "prefix":
                self._prefixes = tuple(p for p in arg.split(",") if p)
            elif kind == "file":
                self._ids = frozenset(Path(arg).read_text(encoding="utf-8").split())
            elif spec != "all":
                raise ValueError(f"unknown rule kind {kind!r}")
        except (OSError, ValueError, re.error) as exc:
            raise ConfigError(f"bad allow-list rule {spec!r}: {exc}", step="serve: allow-list",
                              remedy="use all, regex:PATTERN, prefix:A,B or file:PATH") from None

    def admits(self, ids: list[str]) -> np.ndarray:
        """``True`` for each id the rule admits."""
        if self._pattern is not None:
            matches = map(bool, map(self._pattern.fullmatch, ids))
            return np.fromiter(matches, dtype=bool, count=len(ids))
        if self._prefixes is not None:
            starts = map(methodcaller("startswith", self._prefixes), ids)
            return np.fromiter(starts, dtype=bool, count=len(ids))
        if self._ids is not None:
            return np.fromiter(map(self._ids.__contains__, ids), dtype=bool, count=len(ids))
        return np.ones(len(ids), dtype=bool)
