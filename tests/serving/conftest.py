"""Fixtures of the serving tests: models trained once per session (see serving_harness)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving_harness import Book, Trained, train_book


@pytest.fixture(scope="session")
def book(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Book:
    return train_book(shared_data, tmp_path_factory.mktemp("book"))


@pytest.fixture(scope="session")
def linear_model(book: Book) -> Trained:
    return book.trained["lr"]


@pytest.fixture(scope="session")
def tree_model(book: Book) -> Trained:
    return book.trained["sb"]
