"""Shared helpers of the service modules: fetch a row or raise NotFound; find a grant."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from sharedml.platform.errors import NotFound
from sharedml.platform.store.models import Grant

T = TypeVar("T")


def get_or_404(s: Any, model: type[T], key: Any, what: str) -> T:
    row = s.get(model, key)
    if row is None:
        raise NotFound(f"{what} {key} does not exist")
    return row


def find_grant(s: Session, user_id: int, resource: str, resource_id: int) -> Grant | None:
    """The grant ``user_id`` holds on ``resource`` ``resource_id``, or None (at most one)."""
    return s.scalars(
        select(Grant).where(
            Grant.user_id == user_id,
            Grant.resource == resource,
            Grant.resource_id == resource_id,
        )
    ).first()
