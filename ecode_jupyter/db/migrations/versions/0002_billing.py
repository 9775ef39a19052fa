"""billing: credit accounts, ledger, reservations, budgets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 21:02:59.468419
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_accounts",
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("balance_micros", sa.BigInteger(), nullable=False),
        sa.Column("reserved_micros", sa.BigInteger(), nullable=False),
        sa.Column("monthly_allowance_micros", sa.BigInteger(), nullable=True),
        sa.Column("allowance_period", sa.String(length=7), nullable=True),
        sa.Column("allowance_left_micros", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "balance_micros >= 0", name=op.f("ck_credit_accounts_balance_not_negative")
        ),
        sa.CheckConstraint(
            "reserved_micros >= 0 AND reserved_micros <= balance_micros",
            name=op.f("ck_credit_accounts_reserved_within_balance"),
        ),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_credit_accounts")),
    )
    op.create_table(
        "credit_budgets",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("limit_micros", sa.BigInteger(), nullable=True),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("period_key", sa.String(length=7), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), nullable=False),
        sa.Column("reserved_micros", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "reserved_micros >= 0", name=op.f("ck_credit_budgets_reserved_not_negative")
        ),
        sa.CheckConstraint("spent_micros >= 0", name=op.f("ck_credit_budgets_spent_not_negative")),
        sa.PrimaryKeyConstraint("scope", "subject", name=op.f("pk_credit_budgets")),
    )
    op.create_table(
        "credit_ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("hold_micros", sa.BigInteger(), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("reservation_id", sa.String(length=32), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_ledger")),
        sa.UniqueConstraint("key", name=op.f("uq_credit_ledger_key")),
    )
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_ledger_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_credit_ledger_run_id"), ["run_id"], unique=False)
        batch_op.create_index("ix_credit_ledger_username_ts", ["username", "ts"], unique=False)

    op.create_table(
        "credit_reservations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("user_budget_held", sa.Boolean(), nullable=False),
        sa.Column("project_budget_held", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cost_micros", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "amount_micros >= 0", name=op.f("ck_credit_reservations_amount_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_reservations")),
        sa.UniqueConstraint("key", name=op.f("uq_credit_reservations_key")),
    )
    with op.batch_alter_table("credit_reservations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_reservations_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            "ix_credit_reservations_status_expires", ["status", "expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_credit_reservations_username"), ["username"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("credit_reservations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_reservations_username"))
        batch_op.drop_index("ix_credit_reservations_status_expires")
        batch_op.drop_index(batch_op.f("ix_credit_reservations_run_id"))

    op.drop_table("credit_reservations")
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_ledger_username_ts")
        batch_op.drop_index(batch_op.f("ix_credit_ledger_run_id"))
        batch_op.drop_index(batch_op.f("ix_credit_ledger_project_id"))

    op.drop_table("credit_ledger")
    op.drop_table("credit_budgets")
    op.drop_table("credit_accounts")
