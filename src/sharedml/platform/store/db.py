"""Engine, sessions and migrations: :class:`Store` is the one handle on the database.

SQLite (a file in the platform's data dir) is the embedded default; PostgreSQL
(``postgresql+psycopg://...``, the ``postgres`` extra) is the production
backend. :meth:`Store.upgrade` runs the Alembic migrations to ``head``; the
platform calls it on start-up, so a new release migrates its database itself.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from sharedml.errors import ConfigError
from sharedml.platform.store.fair_lock import FairRLock

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def sqlite_url(data_dir: Path) -> str:
    """The embedded database's URL: ``DATA_DIR/platform.db``."""
    return f"sqlite:///{Path(data_dir).resolve() / 'platform.db'}"


#: How long a SQLite writer waits for the lock before the store reports itself busy
#: (the API answers 503 with Retry-After; issue 14 item 3).
BUSY_TIMEOUT_MS = 10_000


def private_sqlite_file(url: str) -> None:
    """Create the SQLite file (and its WAL and shared-memory files) readable by the
    owner only, or narrow an existing one to 0600: it holds password hashes,
    sealed TOTP secrets and the audit log (issue 14 item 8: it was 0644)."""
    name = url.removeprefix("sqlite:///")
    if not url.startswith("sqlite:///") or not name or name == ":memory:":
        return
    db = Path(name)
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path == db and not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        if path.exists():
            os.chmod(path, 0o600)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin, so
    # SAVEPOINTs (nested transactions) work (SQLAlchemy's pysqlite notes).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    if conn.get_execution_options().get("sharedml_read"):
        conn.exec_driver_sql("BEGIN")  # a reader: WAL lets it run beside the writer
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # write lock first: read-then-write never BUSY


class Store:
    """A database: ``with store.session() as s: ...`` commits on success, rolls back on error."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            if url.startswith("sqlite"):
                private_sqlite_file(url)
                self.engine: Engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
                )
                event.listen(self.engine, "connect", _sqlite_pragmas)
                event.listen(self.engine, "begin", _sqlite_begin)
            else:
                # as many connections as the API's worker threads (40) may hold at once;
                # a connection not free within the busy timeout is "busy" (503), not a
                # 30 s stall (bench/load.py on PostgreSQL: QueuePool 5+10 exhausted)
                self.engine = create_engine(
                    url, pool_pre_ping=True, pool_size=20, max_overflow=20,
                    pool_timeout=BUSY_TIMEOUT_MS / 1000,
                )
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise ConfigError(
                f"cannot open the platform database {self.safe_url}: {exc}",
                remedy="check --db-url; PostgreSQL needs the 'postgres' extra (psycopg)",
            ) from None
        self._write_lock = FairRLock() if self.dialect == "sqlite" else None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(
            self.engine.execution_options(sharedml_read=True), expire_on_commit=False
        )

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        return (
            self.engine.url.render_as_string(hide_password=True)
            if hasattr(self, "engine")
            else self.url.split("@")[-1]
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.writer(), self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextmanager
    def writer(self) -> Iterator[None]:
        """On SQLite, this process's writers queue on a lock of their own before asking
        SQLite for its write lock. SQLite's busy handler polls with growing sleeps, so
        under many writer threads a waiting transaction can starve until its busy timeout
        (bench/load.py: POST /jobs p50 5.7 s and 503s at 10 clients); a released Python
        lock (FIFO: ``fair_lock.py``) goes to the longest waiter at once. Waiting past ``BUSY_TIMEOUT_MS`` is "busy"
        (the API's 503), as SQLite's own timeout is. Nested sessions of one thread
        (RLock) pass; other processes (the CLI) still meet SQLite's busy timeout. Take
        it before any lock of the caller's that a session may be opened under."""
        if self._write_lock is None:
            yield
            return
        if not self._write_lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
            raise OperationalError("BEGIN IMMEDIATE", None,
                                   sqlite3.OperationalError("database is locked"))
        try:
            yield
        finally:
            self._write_lock.release()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads: on SQLite it does not take the write lock
        (WAL readers run beside the one writer), so listings and checks do not queue
        behind writes. Nothing is written: changes made in it are dropped at the end;
        objects read stay loaded (detached)."""
        with self._readers() as s:  # closing releases the connection: nothing is written
            yield s

    def upgrade(self, revision: str = "head") -> None:
        """Run the Alembic migrations up to ``revision`` (idempotent)."""
        from alembic import command

        with self.engine.begin() as conn:
            command.upgrade(self._alembic_config(conn), revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    def dispose(self) -> None:
        self.engine.dispose()

    def _alembic_config(self, conn: Any) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        return cfg
