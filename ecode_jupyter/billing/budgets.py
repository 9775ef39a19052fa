"""Budgets: a cap on what a user or a project may spend per month or in total.

A budget row counts ``spent_micros`` (settled) and ``reserved_micros`` (held by calls in
flight). A reservation holds against every budget that applies with the same kind of
conditional UPDATE as the account (``spent + reserved + amount <= limit``), in the same
transaction, so a burst of calls from many users cannot pass a project's cap either.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..db.models import Project
from ..exceptions import InsufficientCredits, NotFound
from .accounts import insert_ignore, month_start, now_param, period_of, rowcount
from .models import BudgetPeriod, BudgetScope, CreditBudget, EntryKind, LedgerEntry
from .prices import format_credits, money

budgets = cast(Table, CreditBudget.__table__)

_COLUMNS = (
    budgets.c.scope,
    budgets.c.subject,
    budgets.c.limit_micros,
    budgets.c.spent_micros,
    budgets.c.reserved_micros,
    budgets.c.period,
    budgets.c.period_key,
)
# The budgets that apply to a call of user :u in project :p.
APPLYING = select(*_COLUMNS).where(
    or_(
        and_(budgets.c.scope == BudgetScope.user.value, budgets.c.subject == bindparam("u")),
        and_(budgets.c.scope == BudgetScope.project.value, budgets.c.subject == bindparam("p")),
    )
)
APPLYING_LOCKED = APPLYING.with_for_update()
_ONE = and_(budgets.c.scope == bindparam("sc"), budgets.c.subject == bindparam("sj"))
# A monthly budget counts from the first of the month: a new month starts from zero.
ROLL = (
    update(budgets)
    .where(
        _ONE, budgets.c.period == BudgetPeriod.month.value, budgets.c.period_key < bindparam("pk")
    )
    .values(period_key=bindparam("pk"), spent_micros=0)
)
_HOLD = (
    update(budgets)
    .where(
        _ONE,
        or_(
            budgets.c.limit_micros.is_(None),
            budgets.c.spent_micros + budgets.c.reserved_micros + bindparam("amt")
            <= budgets.c.limit_micros,
        ),
    )
    .values(reserved_micros=budgets.c.reserved_micros + bindparam("amt"))
)
SPEND = (
    update(budgets)
    .where(_ONE)
    .values(
        spent_micros=budgets.c.spent_micros + bindparam("spend"),
        reserved_micros=budgets.c.reserved_micros - bindparam("unhold"),
        updated_at=now_param(),
    )
)


def user_first(rows: Sequence[Any]) -> list[Any]:
    # Budgets are changed user first, then project: the same order in every transaction.
    return sorted(rows, key=lambda row: row.scope != BudgetScope.user.value)


def is_stale(budget: Any, period: str) -> bool:
    """Whether a monthly budget's count is from an earlier month."""
    return bool(budget.period == BudgetPeriod.month.value and budget.period_key < period)


def hold(conn: Connection, budget: Any, amount: int, period: str) -> None:
    """Hold ``amount`` against one budget, or raise InsufficientCredits."""
    which = {"sc": budget.scope, "sj": budget.subject}
    if is_stale(budget, period):
        conn.execute(ROLL, {**which, "pk": period})
    if rowcount(conn.execute(_HOLD, {**which, "amt": amount})):
        return
    row = conn.execute(
        select(budgets.c.limit_micros, budgets.c.spent_micros, budgets.c.reserved_micros).where(
            _ONE
        ),
        which,
    ).one()
    room = max(0, (row.limit_micros or 0) - row.spent_micros - row.reserved_micros)
    what = "your budget" if budget.scope == BudgetScope.user.value else "the project's budget"
    msg = (
        f"this model call may cost up to {format_credits(amount)} credits, but {what} has "
        f"{format_credits(room)} credits left"
    )
    raise InsufficientCredits(
        msg, needed_micros=amount, available_micros=room, limit=f"{budget.scope}_budget"
    )


def headroom(
    session: Session, username: str, project_id: str | None, now: datetime
) -> tuple[int, str] | None:
    """The tightest budget's room and its name ("user_budget"…), or None when uncapped."""
    tightest: tuple[int, str] | None = None
    period = period_of(now)
    for budget in session.execute(APPLYING, {"u": username, "p": project_id}):
        if budget.limit_micros is None:
            continue
        spent = 0 if is_stale(budget, period) else budget.spent_micros
        room = max(0, budget.limit_micros - spent - budget.reserved_micros)
        if tightest is None or room < tightest[0]:
            tightest = (room, f"{budget.scope}_budget")
    return tightest


def budget_json(row: CreditBudget, name: str | None = None) -> dict[str, Any]:
    left = None
    if row.limit_micros is not None:
        left = max(0, row.limit_micros - row.spent_micros - row.reserved_micros)
    data: dict[str, Any] = {
        "scope": row.scope,
        "subject": row.subject,
        "period": row.period,
        "period_key": row.period_key,
        **money(
            limit=row.limit_micros, spent=row.spent_micros, reserved=row.reserved_micros, left=left
        ),
        "updated_at": row.updated_at.isoformat(),
        "updated_by": row.updated_by,
    }
    if name is not None:
        data["name"] = name
    return data


def _spent(session: Session, scope: BudgetScope, subject: str, period: str, now: datetime) -> int:
    """What the ledger says was spent in the budget's current period."""
    stmt = select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(
        LedgerEntry.kind.in_([EntryKind.settlement.value, EntryKind.refund.value])
    )
    if scope is BudgetScope.user:
        stmt = stmt.where(LedgerEntry.username == subject)
    else:
        stmt = stmt.where(LedgerEntry.project_id == subject)
    if period == BudgetPeriod.month.value:
        stmt = stmt.where(LedgerEntry.ts >= month_start(now))
    return max(0, -int(session.scalar(stmt) or 0))


def set_budget(
    session: Session,
    *,
    scope: BudgetScope,
    subject: str,
    limit_micros: int | None,
    period: BudgetPeriod | None,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """Create or change a budget; a new one starts from what the ledger says was spent."""
    name = None
    if scope is BudgetScope.project:
        name = session.scalar(select(Project.name).where(Project.id == subject))
        if name is None:
            msg = f"no project {subject}"
            raise NotFound(msg)
    default_period = BudgetPeriod.total if scope is BudgetScope.project else BudgetPeriod.month
    insert_ignore(
        session,
        budgets,
        {
            "scope": scope.value,
            "subject": subject,
            "limit_micros": limit_micros,
            "period": (period or default_period).value,
            "period_key": "",
            "spent_micros": 0,
            "reserved_micros": 0,
            "updated_at": now,
            "updated_by": actor,
        },
    )
    row = session.execute(
        select(CreditBudget)
        .where(CreditBudget.scope == scope.value, CreditBudget.subject == subject)
        .with_for_update()
    ).scalar_one()
    new_period = period.value if period is not None else row.period
    key = period_of(now) if new_period == BudgetPeriod.month.value else "total"
    if row.period_key != key or row.period != new_period:
        # A new budget, or a new way of counting: start from what the ledger says.
        row.spent_micros = _spent(session, scope, subject, new_period, now)
    row.period, row.period_key = new_period, key
    row.limit_micros = limit_micros
    row.updated_at, row.updated_by = now, actor
    session.flush()
    return budget_json(row, name)
