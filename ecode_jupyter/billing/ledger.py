"""The transactions that move credits. Each function runs inside one database transaction.

How "never overspend" holds under concurrency, on SQLite and PostgreSQL alike:

* A reservation is one conditional UPDATE,
  ``SET reserved = reserved + :amt WHERE username = :u AND balance - reserved >= :amt``.
  There is no read before it: the database evaluates the condition on the row it locks.
  PostgreSQL re-checks the WHERE clause against the newest committed row when a concurrent
  writer held it (READ COMMITTED), and SQLite runs one writer at a time (``BEGIN
  IMMEDIATE``), so two reservations can never both see the same free credits. Budgets are
  held the same way, in the same transaction; if any hold fails the whole transaction rolls
  back.
* Settling and releasing first move the reservation out of ``open`` with a conditional UPDATE,
  so a reservation is let go exactly once whatever races (a retried report, the expiry
  sweep). Settling then locks the account row (``SELECT … FOR UPDATE``) before it computes the
  charge.
* Overage policy: a call may cost more than its reservation (the prompt estimate was short).
  The charge is capped at what can be paid without going negative or past a budget — the
  reservation plus the credits not held by other calls, and each budget's headroom — and the
  uncharged rest is recorded on the settlement entry (``details.uncharged_micros``) and
  logged. The balance is never negative and no limit is ever exceeded.
* Every ledger entry has a unique idempotency key; a replayed report finds its entry and
  returns what it charged the first time.
* Locks are always taken in the order reservation → account → user budget → project budget,
  so concurrent transactions cannot deadlock on PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, CursorResult, Result
from sqlalchemy.orm import Session

from ..db.models import UTCDateTime, new_id
from ..exceptions import InsufficientCredits, InvalidInput, NotFound
from .models import (
    BudgetPeriod,
    BudgetScope,
    CreditAccount,
    CreditBudget,
    CreditReservation,
    EntryKind,
    LedgerEntry,
    ReservationStatus,
)
from .prices import UsageLike, format_credits

log = logging.getLogger(__name__)

EXPIRY_BATCH = 500

accounts = cast(Table, CreditAccount.__table__)
entries = cast(Table, LedgerEntry.__table__)
holds = cast(Table, CreditReservation.__table__)
budgets = cast(Table, CreditBudget.__table__)


def _now_param() -> BindParameter[datetime]:
    return bindparam("ts_now", type_=UTCDateTime())


# The statements of the hot path are built once: constructing a SQLAlchemy statement costs
# more Python time than SQLite takes to run it. Parameter names differ from column names,
# which SQLAlchemy reserves in SET clauses.

# The reservation: one conditional UPDATE, no read before it. It also requires this month's
# allowance to have been given, so a new month (or a new user) takes the slow path once.
_HOLD = (
    update(accounts)
    .where(
        accounts.c.username == bindparam("u"),
        accounts.c.allowance_period >= bindparam("pk"),
        accounts.c.balance_micros - accounts.c.reserved_micros >= bindparam("amt"),
    )
    .values(reserved_micros=accounts.c.reserved_micros + bindparam("amt"), updated_at=_now_param())
)
_AVAILABLE = select(accounts.c.balance_micros - accounts.c.reserved_micros).where(
    accounts.c.username == bindparam("u")
)
_ACCOUNT_LOCKED = (
    select(accounts.c.balance_micros, accounts.c.reserved_micros)
    .where(accounts.c.username == bindparam("u"))
    .with_for_update()
)
_CHARGE = (
    update(accounts)
    .where(accounts.c.username == bindparam("u"))
    .values(
        balance_micros=accounts.c.balance_micros - bindparam("charge"),
        reserved_micros=accounts.c.reserved_micros - bindparam("unhold"),
        # Spending draws on this month's allowance first.
        allowance_left_micros=case(
            (
                accounts.c.allowance_left_micros > bindparam("charge"),
                accounts.c.allowance_left_micros - bindparam("charge"),
            ),
            else_=0,
        ),
        updated_at=_now_param(),
    )
)
_ADD = (
    update(accounts)
    .where(accounts.c.username == bindparam("u"))
    .values(balance_micros=accounts.c.balance_micros + bindparam("amt"), updated_at=_now_param())
)

_BUDGET_COLUMNS = (
    budgets.c.scope,
    budgets.c.subject,
    budgets.c.limit_micros,
    budgets.c.spent_micros,
    budgets.c.reserved_micros,
    budgets.c.period,
    budgets.c.period_key,
)
_BUDGETS = select(*_BUDGET_COLUMNS).where(
    or_(
        and_(budgets.c.scope == BudgetScope.user.value, budgets.c.subject == bindparam("u")),
        and_(budgets.c.scope == BudgetScope.project.value, budgets.c.subject == bindparam("p")),
    )
)
_BUDGETS_LOCKED = _BUDGETS.with_for_update()
_ONE_BUDGET = and_(budgets.c.scope == bindparam("sc"), budgets.c.subject == bindparam("sj"))
# A monthly budget counts from the first of the month: a new month starts from zero.
_ROLL_BUDGET = (
    update(budgets)
    .where(
        _ONE_BUDGET,
        budgets.c.period == BudgetPeriod.month.value,
        budgets.c.period_key < bindparam("pk"),
    )
    .values(period_key=bindparam("pk"), spent_micros=0)
)
_HOLD_BUDGET = (
    update(budgets)
    .where(
        _ONE_BUDGET,
        or_(
            budgets.c.limit_micros.is_(None),
            budgets.c.spent_micros + budgets.c.reserved_micros + bindparam("amt")
            <= budgets.c.limit_micros,
        ),
    )
    .values(reserved_micros=budgets.c.reserved_micros + bindparam("amt"))
)
_SPEND_BUDGET = (
    update(budgets)
    .where(_ONE_BUDGET)
    .values(
        spent_micros=budgets.c.spent_micros + bindparam("spend"),
        reserved_micros=budgets.c.reserved_micros - bindparam("unhold"),
        updated_at=_now_param(),
    )
)

# Moving a reservation from one status to the next, once: the guard against every race.
_CLAIM = (
    update(holds)
    .where(holds.c.id == bindparam("rid"), holds.c.status == bindparam("from_st"))
    .values(status=bindparam("to_st"), closed_at=_now_param(), reason=bindparam("why"))
    .returning(
        holds.c.username,
        holds.c.project_id,
        holds.c.run_id,
        holds.c.model,
        holds.c.amount_micros,
        holds.c.user_budget_held,
        holds.c.project_budget_held,
    )
)
_GET_HOLD = select(holds.c.status, holds.c.cost_micros).where(holds.c.id == bindparam("rid"))
_SET_COST = update(holds).where(holds.c.id == bindparam("rid")).values(cost_micros=bindparam("c"))
_INSERT_HOLD = insert(holds)
_INSERT_ENTRY = insert(entries)


@dataclass(frozen=True)
class Reservation:
    """Credits held for one model call; hand it back to ``settle`` or ``release``."""

    id: str
    key: str
    username: str
    project_id: str | None
    run_id: str | None
    model: str
    amount_micros: int
    expires_at: datetime
    status: str

    @classmethod
    def from_row(cls, row: CreditReservation) -> Reservation:
        return cls(
            id=row.id,
            key=row.key,
            username=row.username,
            project_id=row.project_id,
            run_id=row.run_id,
            model=row.model,
            amount_micros=row.amount_micros,
            expires_at=row.expires_at,
            status=row.status,
        )


def period_of(now: datetime) -> str:
    """The calendar month (UTC) ``now`` falls in, as ``YYYY-MM``."""
    return f"{now.year:04d}-{now.month:02d}"


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def insert_ignore(session: Session, table: Table, values: dict[str, Any]) -> None:
    """INSERT … ON CONFLICT DO NOTHING, on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(table).values(**values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(table).values(**values).on_conflict_do_nothing())


def new_account(username: str, now: datetime) -> dict[str, Any]:
    return {
        "username": username,
        "balance_micros": 0,
        "reserved_micros": 0,
        "allowance_left_micros": 0,
        "created_at": now,
        "updated_at": now,
    }


# -- accounts and the monthly allowance -------------------------------------------------


def ensure_account(session: Session, username: str, now: datetime, default_allowance: int) -> None:
    """Make sure the account exists and has this month's allowance (first use each month)."""
    period = period_of(now)
    current = session.execute(
        select(accounts.c.allowance_period).where(accounts.c.username == username)
    ).first()
    if current is None:
        insert_ignore(session, accounts, new_account(username, now))
    elif current.allowance_period is not None and current.allowance_period >= period:
        return
    _roll_allowance(session.connection(), username, period, now, default_allowance)


def _roll_allowance(
    conn: Connection, username: str, period: str, now: datetime, default_allowance: int
) -> None:
    acct = conn.execute(
        select(
            accounts.c.balance_micros,
            accounts.c.reserved_micros,
            accounts.c.monthly_allowance_micros,
            accounts.c.allowance_period,
            accounts.c.allowance_left_micros,
        )
        .where(accounts.c.username == username)
        .with_for_update()
    ).one()
    # Only ever forward: a server whose clock lags must not re-open last month.
    if acct.allowance_period is not None and acct.allowance_period >= period:
        return
    allowance = (
        acct.monthly_allowance_micros
        if acct.monthly_allowance_micros is not None
        else default_allowance
    )
    expired = 0
    if acct.allowance_period is not None and acct.allowance_left_micros > 0:
        # Unspent allowance lapses, but never credits a call in flight has been promised.
        expired = min(acct.allowance_left_micros, acct.balance_micros - acct.reserved_micros)
    if expired > 0:
        conn.execute(
            _INSERT_ENTRY,
            {
                "key": f"expiry:{username}:{acct.allowance_period}",
                "ts": now,
                "username": username,
                "kind": EntryKind.expiry.value,
                "amount_micros": -expired,
                "note": f"unspent allowance of {acct.allowance_period}",
            },
        )
    if allowance > 0:
        conn.execute(
            _INSERT_ENTRY,
            {
                "key": f"allowance:{username}:{period}",
                "ts": now,
                "username": username,
                "kind": EntryKind.allowance.value,
                "amount_micros": allowance,
                "note": f"monthly allowance for {period}",
            },
        )
    conn.execute(
        update(accounts)
        .where(accounts.c.username == username)
        .values(
            balance_micros=accounts.c.balance_micros - expired + allowance,
            allowance_period=period,
            allowance_left_micros=allowance,
            updated_at=now,
        )
    )
    log.info("allowance for %s: %s credits for %s", username, format_credits(allowance), period)


# -- reserve / settle / release ---------------------------------------------------------


def reservation_by_key(session: Session, key: str) -> Reservation | None:
    row = session.scalar(select(CreditReservation).where(CreditReservation.key == key))
    return Reservation.from_row(row) if row is not None else None


def _user_first(rows: Sequence[Any]) -> list[Any]:
    # Budgets are locked user first, then project: the same order in every transaction.
    return sorted(rows, key=lambda row: row.scope != BudgetScope.user.value)


def reserve(
    session: Session,
    *,
    username: str,
    project_id: str | None,
    run_id: str | None,
    model: str,
    amount: int,
    key: str,
    now: datetime,
    ttl: timedelta,
    default_allowance: int,
) -> Reservation:
    """Hold ``amount`` for a model call, or raise InsufficientCredits and change nothing.

    A replayed ``key`` returns the first reservation; when the replay races the first one,
    the insert below fails on the unique key and the caller returns the winner.
    """
    conn = session.connection()
    period = period_of(now)
    hold = {"u": username, "pk": period, "amt": amount, "ts_now": now}
    user_held = project_held = False
    if amount <= 0:
        ensure_account(session, username, now, default_allowance)
    elif not _rowcount(conn.execute(_HOLD, hold)):
        # Not enough credits — or a replay, or the first call this month: find out which.
        existing = reservation_by_key(session, key)
        if existing is not None:
            return existing
        ensure_account(session, username, now, default_allowance)
        if not _rowcount(conn.execute(_HOLD, hold)):
            available = int(conn.execute(_AVAILABLE, {"u": username}).scalar() or 0)
            msg = (
                f"this model call may cost up to {format_credits(amount)} credits and "
                f"{format_credits(available)} are available; ask an admin for credits"
            )
            raise InsufficientCredits(
                msg, needed_micros=amount, available_micros=available, limit="credits"
            )
    if amount > 0:
        for budget in _user_first(conn.execute(_BUDGETS, {"u": username, "p": project_id}).all()):
            _hold_budget(conn, budget, amount, period)
            if budget.scope == BudgetScope.user.value:
                user_held = True
            else:
                project_held = True
    reservation = Reservation(
        id=new_id(),
        key=key,
        username=username,
        project_id=project_id,
        run_id=run_id,
        model=model,
        amount_micros=amount,
        expires_at=now + ttl,
        status=ReservationStatus.open.value,
    )
    conn.execute(
        _INSERT_HOLD,
        {
            "id": reservation.id,
            "key": key,
            "username": username,
            "project_id": project_id,
            "run_id": run_id,
            "model": model,
            "amount_micros": amount,
            "user_budget_held": user_held,
            "project_budget_held": project_held,
            "status": reservation.status,
            "created_at": now,
            "expires_at": reservation.expires_at,
        },
    )
    conn.execute(
        _INSERT_ENTRY,
        {
            "key": f"reservation:{key}",
            "ts": now,
            "username": username,
            "kind": EntryKind.reservation.value,
            "hold_micros": amount,
            "project_id": project_id,
            "run_id": run_id,
            "reservation_id": reservation.id,
            "model": model,
        },
    )
    return reservation


def _hold_budget(conn: Connection, budget: Any, amount: int, period: str) -> None:
    which = {"sc": budget.scope, "sj": budget.subject}
    if budget.period == BudgetPeriod.month.value and budget.period_key < period:
        conn.execute(_ROLL_BUDGET, {**which, "pk": period})
    if _rowcount(conn.execute(_HOLD_BUDGET, {**which, "amt": amount})):
        return
    row = conn.execute(
        select(budgets.c.limit_micros, budgets.c.spent_micros, budgets.c.reserved_micros).where(
            _ONE_BUDGET
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


def _claim(conn: Connection, rid: str, from_st: str, to_st: str, why: str, now: datetime) -> Any:
    params = {"rid": rid, "from_st": from_st, "to_st": to_st, "why": why[:500], "ts_now": now}
    return conn.execute(_CLAIM, params).first()


def settle(
    session: Session,
    *,
    reservation_id: str,
    cost: int,
    usage: UsageLike,
    key: str,
    now: datetime,
) -> int:
    """Charge a call's real cost against its reservation and let the rest go."""
    conn = session.connection()
    open_, settled = ReservationStatus.open.value, ReservationStatus.settled.value
    row = _claim(conn, reservation_id, open_, settled, "settled", now)
    held = row is not None
    if row is None:
        current = conn.execute(_GET_HOLD, {"rid": reservation_id}).first()
        if current is None:
            msg = f"no reservation {reservation_id}"
            raise NotFound(msg)
        if current.status == settled:
            # A replayed report — or another report of the same call: one reservation is
            # one model call, so it is charged once.
            return int(current.cost_micros or 0)
        # Released (expired, or let go before the usage arrived): the provider still billed
        # the tokens, so charge them now, with no hold left to let go.
        row = _claim(
            conn,
            reservation_id,
            ReservationStatus.released.value,
            settled,
            "settled after release",
            now,
        )
        if row is None:  # settled by a concurrent report in between
            return int(conn.execute(_GET_HOLD, {"rid": reservation_id}).one().cost_micros or 0)
    hold = int(row.amount_micros) if held else 0
    acct = conn.execute(_ACCOUNT_LOCKED, {"u": row.username}).first()
    # The most that can be charged: never below zero, never past a budget's cap.
    charge = min(cost, max(0, acct.balance_micros - acct.reserved_micros + hold)) if acct else 0
    period = period_of(now)
    found = _user_first(
        conn.execute(_BUDGETS_LOCKED, {"u": row.username, "p": row.project_id}).all()
    )
    unholds: list[tuple[Any, int]] = []
    for budget in found:
        budget_held = held and (
            row.user_budget_held
            if budget.scope == BudgetScope.user.value
            else row.project_budget_held
        )
        unhold = hold if budget_held else 0
        spent = budget.spent_micros
        if budget.period == BudgetPeriod.month.value and budget.period_key < period:
            conn.execute(_ROLL_BUDGET, {"sc": budget.scope, "sj": budget.subject, "pk": period})
            spent = 0
        if budget.limit_micros is not None:
            room = budget.limit_micros - spent - budget.reserved_micros + unhold
            charge = min(charge, max(0, room))
        unholds.append((budget, unhold))
    for budget, unhold in unholds:
        conn.execute(
            _SPEND_BUDGET,
            {
                "sc": budget.scope,
                "sj": budget.subject,
                "spend": charge,
                "unhold": unhold,
                "ts_now": now,
            },
        )
    if acct is not None:
        conn.execute(_CHARGE, {"u": row.username, "charge": charge, "unhold": hold, "ts_now": now})
    conn.execute(_SET_COST, {"rid": reservation_id, "c": charge})
    details: dict[str, Any] = {"cost_micros": cost}
    if charge < cost:
        details["uncharged_micros"] = cost - charge
        log.warning(
            "reservation %s: call cost %s credits, only %s could be charged",
            reservation_id,
            format_credits(cost),
            format_credits(charge),
        )
    if not held:
        details["late"] = True
    conn.execute(
        _INSERT_ENTRY,
        {
            "key": f"settlement:{key}",
            "ts": now,
            "username": row.username,
            "kind": EntryKind.settlement.value,
            "amount_micros": -charge,
            "hold_micros": -hold,
            "project_id": row.project_id,
            "run_id": row.run_id,
            "reservation_id": reservation_id,
            "model": row.model,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "details": details,
        },
    )
    return int(charge)


def release(session: Session, *, reservation_id: str, reason: str, now: datetime) -> bool:
    """Let a reservation go without a charge; False when it was no longer open."""
    conn = session.connection()
    row = _claim(
        conn,
        reservation_id,
        ReservationStatus.open.value,
        ReservationStatus.released.value,
        reason,
        now,
    )
    if row is None:
        return False
    hold = int(row.amount_micros)
    if hold:
        conn.execute(_CHARGE, {"u": row.username, "charge": 0, "unhold": hold, "ts_now": now})
        scopes = [(BudgetScope.user.value, row.username, row.user_budget_held)]
        scopes.append((BudgetScope.project.value, row.project_id, row.project_budget_held))
        for scope, subject, budget_held in scopes:
            if budget_held:
                conn.execute(
                    _SPEND_BUDGET,
                    {"sc": scope, "sj": subject, "spend": 0, "unhold": hold, "ts_now": now},
                )
    conn.execute(
        _INSERT_ENTRY,
        {
            "key": f"release:{reservation_id}",
            "ts": now,
            "username": row.username,
            "kind": EntryKind.release.value,
            "hold_micros": -hold,
            "project_id": row.project_id,
            "run_id": row.run_id,
            "reservation_id": reservation_id,
            "model": row.model,
            "note": reason[:500],
        },
    )
    return True


def expired_reservation_ids(
    session: Session, now: datetime, limit: int = EXPIRY_BATCH
) -> list[str]:
    return list(
        session.scalars(
            select(CreditReservation.id)
            .where(
                CreditReservation.status == ReservationStatus.open.value,
                CreditReservation.expires_at < now,
            )
            .order_by(CreditReservation.expires_at)
            .limit(limit)
        )
    )


# -- grants and refunds -----------------------------------------------------------------


def entry_to_json(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "key": entry.key,
        "ts": entry.ts.isoformat(),
        "user": entry.username,
        "kind": entry.kind,
        "amount_micros": entry.amount_micros,
        "amount": format_credits(entry.amount_micros),
        "hold_micros": entry.hold_micros,
        "project_id": entry.project_id,
        "run_id": entry.run_id,
        "model": entry.model,
        "actor": entry.actor,
        "note": entry.note,
    }


def entry_by_key(session: Session, key: str) -> LedgerEntry | None:
    return session.scalar(select(LedgerEntry).where(LedgerEntry.key == key))


def run_charges(session: Session, run_id: str, username: str | None = None) -> int:
    """What a run has cost so far, net of refunds."""
    stmt = select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(
        LedgerEntry.run_id == run_id,
        LedgerEntry.kind.in_([EntryKind.settlement.value, EntryKind.refund.value]),
    )
    if username is not None:
        stmt = stmt.where(LedgerEntry.username == username)
    return -int(session.scalar(stmt) or 0)


def credit(
    session: Session,
    *,
    username: str,
    amount: int,
    kind: EntryKind,
    key: str,
    actor: str,
    note: str,
    now: datetime,
    default_allowance: int,
    run_id: str | None = None,
) -> tuple[LedgerEntry, bool]:
    """Add credits (a grant or a refund) once per key; returns the entry and whether it is new."""
    prior = entry_by_key(session, key)
    if prior is not None:
        return prior, False
    if amount <= 0:
        msg = "the amount must be more than 0 credits"
        raise InvalidInput(msg, field="amount")
    ensure_account(session, username, now, default_allowance)
    project_id: str | None = None
    if kind is EntryKind.refund:
        if not run_id:
            msg = "a refund names the run it gives back"
            raise InvalidInput(msg, field="run_id")
        # Lock the account first, so two refunds of one run cannot both see its full cost.
        session.execute(_ACCOUNT_LOCKED, {"u": username}).one()
        refundable = run_charges(session, run_id, username)
        if refundable <= 0:
            msg = f"run {run_id} has nothing left to refund to {username}"
            raise InvalidInput(msg, field="run_id")
        amount = min(amount, refundable)
        project_id = session.scalar(
            select(LedgerEntry.project_id).where(LedgerEntry.run_id == run_id).limit(1)
        )
    session.execute(_ADD, {"u": username, "amt": amount, "ts_now": now})
    entry = LedgerEntry(
        key=key,
        ts=now,
        username=username,
        kind=kind.value,
        amount_micros=amount,
        run_id=run_id,
        project_id=project_id,
        actor=actor,
        note=note[:1000],
    )
    session.add(entry)
    session.flush()
    return entry, True
