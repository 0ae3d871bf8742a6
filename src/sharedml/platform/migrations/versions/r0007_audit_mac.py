"""audit: a keyed MAC per audit entry (issue 14); entries before it keep none

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 22:00:00.000000

The MAC key is derived from ``platform.key``, which a migration does not
read: entries already in the log stay without a MAC (verified by the chain,
by the first MAC after them, which covers their hashes, and by checkpoints);
the platform MACs every entry it appends from now on (``audit_mac.py``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("mac")
