"""runs: a cost cap of the run's own (max_credits at start or continue)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 17:06:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch: SQLite cannot ALTER a table in place beyond adding a plain column; the batch
    # form works on both databases and keeps the table's constraints.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("max_cost_micros", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("max_cost_micros")
