"""What a user sees: the account summary, usage by model, project, day or run, and CSV.

Usage is read from the ledger's settlements (minus refunds), so the reports and the balance
come from the same rows and always agree.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ..db.models import Project
from ..exceptions import InvalidInput
from .accounts import ensure_account, month_start, next_month, period_of
from .budgets import budget_json
from .models import (
    BudgetScope,
    CreditAccount,
    CreditBudget,
    CreditReservation,
    EntryKind,
    LedgerEntry,
    ReservationStatus,
)
from .prices import MICROS_PER_CREDIT, format_credits, money

GROUPS = ("model", "project", "day", "run")
CSV_COLUMNS = (
    "group",
    "label",
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_micros",
    "cost",
    "uncharged_micros",
)


def account_summary(
    session: Session, username: str, now: datetime, default_allowance: int
) -> dict[str, Any]:
    """Balance, holds, allowance, budgets and this month's spend of one user."""
    ensure_account(session, username, now, default_allowance)
    # A shared lock on the account: every change to its holds also writes this row, so the
    # counts read below agree with it (READ COMMITTED would otherwise allow skew).
    acct = session.execute(
        select(CreditAccount).where(CreditAccount.username == username).with_for_update(read=True)
    ).scalar_one()
    spent = -int(
        session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(
                LedgerEntry.username == username,
                LedgerEntry.kind.in_([EntryKind.settlement.value, EntryKind.refund.value]),
                LedgerEntry.ts >= month_start(now),
            )
        )
        or 0
    )
    open_holds = int(
        session.scalar(
            select(func.count()).where(
                CreditReservation.username == username,
                CreditReservation.status == ReservationStatus.open.value,
            )
        )
        or 0
    )
    user_budget = session.scalar(
        select(CreditBudget).where(
            CreditBudget.scope == BudgetScope.user.value, CreditBudget.subject == username
        )
    )
    project_budgets = session.execute(
        select(CreditBudget, Project.name)
        .join(Project, Project.id == CreditBudget.subject)
        .where(
            CreditBudget.scope == BudgetScope.project.value,
            Project.owner == username,
            Project.deleted_at.is_(None),
        )
        .order_by(Project.name)
    ).all()
    allowance = (
        acct.monthly_allowance_micros
        if acct.monthly_allowance_micros is not None
        else default_allowance
    )
    return {
        "user": username,
        "unit": {"name": "credit", "micros_per_credit": MICROS_PER_CREDIT},
        **money(
            balance=acct.balance_micros,
            reserved=acct.reserved_micros,
            available=acct.balance_micros - acct.reserved_micros,
        ),
        "open_reservations": open_holds,
        "allowance": {
            **money(monthly=allowance, left=acct.allowance_left_micros),
            "period": acct.allowance_period,
            "renews_at": next_month(now).isoformat(),
        },
        "month": {"period": period_of(now), **money(spent=spent)},
        "budgets": {
            "user": budget_json(user_budget) if user_budget is not None else None,
            "projects": [budget_json(b, name) for b, name in project_budgets],
        },
    }


def _group_expr(session: Session, group: str) -> Any:
    if group == "model":
        return func.coalesce(LedgerEntry.model, "")
    if group == "project":
        return func.coalesce(LedgerEntry.project_id, "")
    if group == "run":
        return func.coalesce(LedgerEntry.run_id, "")
    if group == "day":
        if session.get_bind().dialect.name == "postgresql":
            return func.to_char(func.timezone("UTC", LedgerEntry.ts), "YYYY-MM-DD")
        # SQLite stores UTC timestamps as "YYYY-MM-DD HH:MM:SS.ffffff".
        return func.substr(LedgerEntry.ts, 1, 10)
    msg = f"group must be one of {', '.join(GROUPS)}"
    raise InvalidInput(msg, field="group")


def usage_rows(
    session: Session,
    *,
    username: str | None,
    group: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Calls, tokens and net cost per group; ``username`` None means everybody (admins)."""
    key = _group_expr(session, group).label("key")
    is_call = case((LedgerEntry.kind == EntryKind.settlement.value, 1), else_=0)
    stmt = (
        select(
            key,
            func.sum(is_call).label("calls"),
            func.sum(LedgerEntry.input_tokens).label("input_tokens"),
            func.sum(LedgerEntry.output_tokens).label("output_tokens"),
            func.sum(LedgerEntry.cache_read_tokens).label("cache_read_tokens"),
            func.sum(LedgerEntry.cache_write_tokens).label("cache_write_tokens"),
            (-func.sum(LedgerEntry.amount_micros)).label("cost_micros"),
            # What calls cost beyond what could be charged (a hold too short for the call,
            # before holds covered the worst case): given away, and shown as such.
            func.sum(LedgerEntry.details["uncharged_micros"].as_integer()).label("uncharged"),
        )
        .where(LedgerEntry.kind.in_([EntryKind.settlement.value, EntryKind.refund.value]))
        .group_by(key)
        .order_by(key)
    )
    if username is not None:
        stmt = stmt.where(LedgerEntry.username == username)
    if since is not None:
        stmt = stmt.where(LedgerEntry.ts >= since)
    if until is not None:
        stmt = stmt.where(LedgerEntry.ts < until)
    rows: list[dict[str, Any]] = [
        {
            "group": str(r.key),
            "label": str(r.key),
            "calls": int(r.calls or 0),
            "input_tokens": int(r.input_tokens or 0),
            "output_tokens": int(r.output_tokens or 0),
            "cache_read_tokens": int(r.cache_read_tokens or 0),
            "cache_write_tokens": int(r.cache_write_tokens or 0),
            "cost_micros": int(r.cost_micros or 0),
            "uncharged_micros": int(r.uncharged or 0),
        }
        for r in session.execute(stmt)
    ]
    if group == "project":
        ids = [row["group"] for row in rows if row["group"]]
        names = {
            pid: name
            for pid, name in session.execute(
                select(Project.id, Project.name).where(Project.id.in_(ids))
            )
        }
        for row in rows:
            row["label"] = names.get(row["group"], row["group"])
    for row in rows:
        row["cost"] = format_credits(row["cost_micros"])
        row["uncharged"] = format_credits(row["uncharged_micros"])
    return rows


def usage_total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {
        name: sum(int(row[name]) for row in rows)
        for name in (
            "calls",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cost_micros",
            "uncharged_micros",
        )
    }
    total["cost"] = format_credits(total["cost_micros"])
    total["uncharged"] = format_credits(total["uncharged_micros"])
    return total


def usage_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {name: row[name] for name in CSV_COLUMNS}
        cells["group"], cells["label"] = _text_cell(row["group"]), _text_cell(row["label"])
        writer.writerow(cells)
    return out.getvalue()


def _text_cell(value: str) -> str:
    # Project names are user text: keep spreadsheets from running one as a formula.
    if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
