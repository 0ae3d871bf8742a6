"""Backup and restore (8.3-5): every table as JSON lines, portable between backends.

Format (one JSON object a line)::

    {"format": "sharedml-platform-backup", "version": 1, "revision": "0001", "tables": [...]}
    {"table": "users", "row": {...}}
    ...
    {"end": true, "rows": 1234}

Values are typed by their column: datetimes as ISO 8601 (UTC), bytes as
base64, JSON columns as JSON. Tables are written parents first, so a restore
inserts them in file order. The audit log's hashed fields are text, so the
chain verifies after a restore onto SQLite or PostgreSQL alike.

A restore goes into a database migrated to the same revision and refuses a
non-empty one unless told to wipe it first. TOTP secrets are sealed with the
platform key (``DATA_DIR/platform.key``): the header's ``platform_key`` holds
it sealed under the operator's passphrase (:mod:`sharedml.platform.key_backup`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Column, LargeBinary, Table, func, insert, select, text

from sharedml.errors import ConfigError
from sharedml.platform.store.db import Store
from sharedml.platform.store.models import Base, UTCDateTime

FORMAT = "sharedml-platform-backup"
VERSION = 1


def _tables() -> list[Table]:
    return list(Base.metadata.sorted_tables)


def _encode(col: Column[Any], value: Any) -> Any:
    if value is None:
        return None
    if isinstance(col.type, UTCDateTime):
        return value.isoformat()
    if isinstance(col.type, LargeBinary):
        return base64.b64encode(value).decode("ascii")
    return value


def _decode(col: Column[Any], value: Any) -> Any:
    if value is None:
        return None
    if isinstance(col.type, UTCDateTime):
        return dt.datetime.fromisoformat(value)
    if isinstance(col.type, LargeBinary):
        return base64.b64decode(value)
    return value


def dump(store: Store, platform_key: dict[str, Any] | None = None) -> Iterator[str]:
    """The whole database as JSON lines (with the sealed platform key in the header)."""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "revision": store.current_revision(),
        "backend": store.dialect,
        "tables": [t.name for t in _tables()],
    }
    if platform_key is not None:
        header["platform_key"] = platform_key
    yield json.dumps(header)
    n = 0
    with store.engine.connect() as conn:
        for table in _tables():
            order = list(table.primary_key.columns)
            for row in conn.execute(select(table).order_by(*order)).mappings():
                encoded = {c.name: _encode(c, row[c.name]) for c in table.columns}
                yield json.dumps({"table": table.name, "row": encoded}, ensure_ascii=False)
                n += 1
    yield json.dumps({"end": True, "rows": n})


def backup(store: Store, path: Path, platform_key: dict[str, Any] | None = None) -> int:
    """Write the backup file; returns the number of rows."""
    rows = 0
    tmp = Path(str(path) + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for line in dump(store, platform_key):
            fh.write(line + "\n")
            rows += 1
    tmp.replace(path)
    return rows - 2


def read_header(path: Path) -> dict[str, Any]:
    """The backup's first line (format, revision, tables, and the sealed key if any)."""
    with Path(path).open(encoding="utf-8") as fh:
        header = _parse(fh.readline(), 1)
    if header.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a sharedml platform backup (bad header)")
    return header


def is_empty(store: Store) -> bool:
    with store.engine.connect() as conn:
        return all(
            (conn.scalar(select(func.count()).select_from(t)) or 0) == 0 for t in _tables()
        )


def wipe(store: Store) -> None:
    """Delete every row of every platform table (children first)."""
    with store.engine.begin() as conn:
        for table in reversed(_tables()):
            conn.execute(table.delete())


def restore(store: Store, path: Path, *, wipe_first: bool = False) -> int:
    """Load a backup file into ``store`` (migrated to head first); returns rows restored."""
    store.upgrade()
    if not is_empty(store):
        if not wipe_first:
            raise ConfigError(
                f"the database {store.safe_url} is not empty",
                remedy="restore into an empty database, or pass --wipe to replace its contents",
            )
        wipe(store)
    with Path(path).open(encoding="utf-8") as fh:
        return _load(store, fh)


def _load(store: Store, fh: IO[str]) -> int:
    tables = {t.name: t for t in _tables()}
    header = _parse(fh.readline(), 1)
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ConfigError("not a sharedml platform backup (bad header)")
    if header.get("revision") != store.current_revision():
        raise ConfigError(
            f"backup is at schema revision {header.get('revision')}, "
            f"the database at {store.current_revision()}",
            remedy="restore with the sharedml version that made the backup, then upgrade",
        )
    n, ended = 0, False
    batch: dict[str, list[dict[str, Any]]] = {}
    with store.engine.begin() as conn:
        for lineno, line in enumerate(fh, start=2):
            rec = _parse(line, lineno)
            if rec.get("end"):
                ended = rec.get("rows") == n
                break
            table = tables.get(rec.get("table", ""))
            if table is None:
                raise ConfigError(f"backup line {lineno}: unknown table {rec.get('table')!r}")
            row = {c.name: _decode(c, rec["row"].get(c.name)) for c in table.columns}
            batch.setdefault(table.name, []).append(row)
            n += 1
        if not ended:
            raise ConfigError("backup is truncated (no end record, or a row count mismatch)")
        for table in _tables():
            if batch.get(table.name):
                conn.execute(insert(table), batch[table.name])
        if store.dialect == "postgresql":
            _reset_sequences(conn)
    return n


def _reset_sequences(conn: Any) -> None:
    """After explicit ids were inserted, move PostgreSQL's sequences past them."""
    for table in _tables():
        for col in table.primary_key.columns:
            if col.autoincrement is True:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col.name}'), "
                        f"COALESCE((SELECT MAX({col.name}) FROM {table.name}), 0) + 1, false)"
                    )
                )


def _parse(line: str, lineno: int) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except ValueError:
        raise ConfigError(f"backup line {lineno} is not JSON") from None
    if not isinstance(rec, dict):
        raise ConfigError(f"backup line {lineno} is not a JSON object")
    return rec
