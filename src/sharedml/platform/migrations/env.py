"""Alembic environment: run on the connection the platform hands over.

The platform calls :func:`sharedml.platform.store.db.upgrade` on start-up; it
passes its own connection in ``config.attributes["connection"]``, so no URL or
ini file is needed.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from sharedml.platform.store.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
