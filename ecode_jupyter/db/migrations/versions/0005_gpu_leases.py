"""gpu leases: the leasable GPUs of each host and the leases kernels hold on them

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 16:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpu_slots",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("holders", sa.Integer(), nullable=False),
        sa.Column("present", sa.Boolean(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("holders >= 0", name=op.f("ck_gpu_slots_holders_not_negative")),
        sa.PrimaryKeyConstraint("host", "device_id", name=op.f("pk_gpu_slots")),
    )
    op.create_table(
        "gpu_leases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("group_id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("device_name", sa.String(length=255), nullable=False),
        sa.Column("kernel_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("holder", sa.String(length=300), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=64), nullable=True),
        sa.Column("reservation_id", sa.String(length=32), nullable=True),
        sa.Column("billed_ms", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpu_leases")),
    )
    with op.batch_alter_table("gpu_leases", schema=None) as batch_op:
        batch_op.create_index("ix_gpu_leases_host_ended_at", ["host", "ended_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_gpu_leases_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_gpu_leases_kernel_id"), ["kernel_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_gpu_leases_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gpu_leases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gpu_leases_project_id"))
        batch_op.drop_index(batch_op.f("ix_gpu_leases_kernel_id"))
        batch_op.drop_index(batch_op.f("ix_gpu_leases_group_id"))
        batch_op.drop_index("ix_gpu_leases_host_ended_at")

    op.drop_table("gpu_leases")
    op.drop_table("gpu_slots")
