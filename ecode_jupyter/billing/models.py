"""Billing tables: accounts, the append-only ledger, reservations and budgets.

Two numbers per account move money: ``balance_micros`` (credits held) and
``reserved_micros`` (the part of it promised to model calls in flight). Every change to either
is also written to the ledger as ``amount_micros`` (change to the balance) and ``hold_micros``
(change to the reserved amount), so at all times the ledger's sums equal the account's
columns. CHECK constraints make the database itself refuse a negative balance or a hold larger
than the balance, whatever a bug upstream might try.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db.models import Base, new_id, utcnow

_BIGINT_ID = BigInteger().with_variant(Integer, "sqlite")


class EntryKind(enum.StrEnum):
    """What a ledger entry records."""

    grant = "grant"  # an admin added credits
    allowance = "allowance"  # the monthly allowance topped the account up
    reservation = "reservation"  # credits held for a model call
    settlement = "settlement"  # a model call's real cost charged, its hold let go
    release = "release"  # a hold let go without a charge (failure, cancel, expiry)
    refund = "refund"  # an admin gave back what a run cost
    expiry = "expiry"  # last month's unspent allowance lapsed


class ReservationStatus(enum.StrEnum):
    open = "open"
    settled = "settled"
    released = "released"


class CreditAccount(Base):
    __tablename__ = "credit_accounts"
    __table_args__ = (
        CheckConstraint("balance_micros >= 0", name="balance_not_negative"),
        CheckConstraint(
            "reserved_micros >= 0 AND reserved_micros <= balance_micros",
            name="reserved_within_balance",
        ),
    )

    # Not a foreign key to users: an admin may grant credits before a user's first login.
    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    balance_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    # None: the configured default allowance.
    monthly_allowance_micros: Mapped[int | None] = mapped_column(BigInteger)
    # The "YYYY-MM" the allowance was last topped up for, and what is left of it; spending
    # draws on the allowance first, and the rest lapses when the month turns.
    allowance_period: Mapped[str | None] = mapped_column(String(7))
    allowance_left_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerEntry(Base):
    """One movement of credits. Append-only: rows are never updated or deleted."""

    __tablename__ = "credit_ledger"
    __table_args__ = (Index("ix_credit_ledger_username_ts", "username", "ts"),)

    id: Mapped[int] = mapped_column(_BIGINT_ID, primary_key=True)
    # The idempotency key: a retried report finds its entry instead of charging again.
    key: Mapped[str] = mapped_column(String(255), unique=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    username: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    amount_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    hold_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    project_id: Mapped[str | None] = mapped_column(String(64), index=True)
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    reservation_id: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(128))
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    actor: Mapped[str | None] = mapped_column(String(255))
    note: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class CreditReservation(Base):
    """Credits held for one model call until it is settled or released."""

    __tablename__ = "credit_reservations"
    __table_args__ = (
        Index("ix_credit_reservations_status_expires", "status", "expires_at"),
        CheckConstraint("amount_micros >= 0", name="amount_not_negative"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    username: Mapped[str] = mapped_column(String(255), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(128))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    # Which budgets hold part of this reservation, so only those are let go again.
    user_budget_held: Mapped[bool] = mapped_column(default=False)
    project_budget_held: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default=ReservationStatus.open.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    cost_micros: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)


class BudgetScope(enum.StrEnum):
    user = "user"
    project = "project"


class BudgetPeriod(enum.StrEnum):
    month = "month"  # spend counts from the first of each month (UTC)
    total = "total"  # spend counts forever


class CreditBudget(Base):
    """A cap on what a user or a project may spend per period, whatever the balance."""

    __tablename__ = "credit_budgets"
    __table_args__ = (
        CheckConstraint("spent_micros >= 0", name="spent_not_negative"),
        CheckConstraint("reserved_micros >= 0", name="reserved_not_negative"),
    )

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    # None: no cap (the row keeps counting, so a cap set later starts from the truth).
    limit_micros: Mapped[int | None] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(8), default=BudgetPeriod.month.value)
    # "YYYY-MM" for monthly budgets, "total" otherwise: the period spent_micros counts.
    period_key: Mapped[str] = mapped_column(String(7))
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(255))
