"""approvals: per-project approval rules, the questions runs ask, and a run's mode

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 19:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_policies",
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_approval_policies_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_approval_policies")),
    )
    op.create_table(
        "run_approvals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tool", sa.String(length=64), nullable=True),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_run_approvals_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_approvals")),
    )
    with op.batch_alter_table("run_approvals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_approvals_run_id"), ["run_id"], unique=False)
    # batch: SQLite cannot ALTER a table in place beyond a plain column; the batch form
    # works on both databases. Existing runs were all built the one way there was.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("mode", sa.String(length=16), nullable=False, server_default="build")
        )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("mode")
    with op.batch_alter_table("run_approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_approvals_run_id"))
    op.drop_table("run_approvals")
    op.drop_table("approval_policies")
