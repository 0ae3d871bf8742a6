"""Shared helper of the service modules: fetch a row or raise NotFound."""

from __future__ import annotations

from typing import Any, TypeVar

from sharedml.platform.errors import NotFound

T = TypeVar("T")


def get_or_404(s: Any, model: type[T], key: Any, what: str) -> T:
    row = s.get(model, key)
    if row is None:
        raise NotFound(f"{what} {key} does not exist")
    return row
