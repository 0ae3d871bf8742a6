"""party trust: users belong to a party; approvals carry the owner's signature; datasets
say when their node last reported them

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-10 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("party", sa.String(length=64), nullable=True))
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signer", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("signature", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("spec_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_reported_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("node_reported_at")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_column("spec_sha256")
        batch_op.drop_column("signature")
        batch_op.drop_column("signer")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("party")
