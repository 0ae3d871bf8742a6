"""The platform's database: models, engine, migrations, backup and restore."""

from sharedml.platform.store.db import Store, sqlite_url

__all__ = ["Store", "sqlite_url"]
