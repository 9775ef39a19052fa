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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Update, and_, case, func, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from ..db.models import new_id
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


def _count(session: Session, stmt: Update) -> int:
    """Run an UPDATE and say how many rows it changed."""
    result = session.execute(stmt.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], result).rowcount)


def _insert_ignore(session: Session, model: type[Any], values: dict[str, Any]) -> None:
    """INSERT … ON CONFLICT DO NOTHING, on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(model).values(**values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(model).values(**values).on_conflict_do_nothing())


# -- accounts and the monthly allowance -------------------------------------------------


def ensure_account(session: Session, username: str, now: datetime, default_allowance: int) -> None:
    """Make sure the account exists and has this month's allowance (first use each month)."""
    period = period_of(now)
    current = session.execute(
        select(CreditAccount.allowance_period).where(CreditAccount.username == username)
    ).first()
    if current is None:
        _insert_ignore(
            session,
            CreditAccount,
            {
                "username": username,
                "balance_micros": 0,
                "reserved_micros": 0,
                "allowance_left_micros": 0,
                "created_at": now,
                "updated_at": now,
            },
        )
    elif current.allowance_period is not None and current.allowance_period >= period:
        return
    _roll_allowance(session, username, period, now, default_allowance)


def _roll_allowance(
    session: Session, username: str, period: str, now: datetime, default_allowance: int
) -> None:
    acct = session.execute(
        select(
            CreditAccount.balance_micros,
            CreditAccount.reserved_micros,
            CreditAccount.monthly_allowance_micros,
            CreditAccount.allowance_period,
            CreditAccount.allowance_left_micros,
        )
        .where(CreditAccount.username == username)
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
        session.add(
            LedgerEntry(
                key=f"expiry:{username}:{acct.allowance_period}",
                ts=now,
                username=username,
                kind=EntryKind.expiry.value,
                amount_micros=-expired,
                note=f"unspent allowance of {acct.allowance_period}",
            )
        )
    if allowance > 0:
        session.add(
            LedgerEntry(
                key=f"allowance:{username}:{period}",
                ts=now,
                username=username,
                kind=EntryKind.allowance.value,
                amount_micros=allowance,
                note=f"monthly allowance for {period}",
            )
        )
    _count(
        session,
        update(CreditAccount)
        .where(CreditAccount.username == username)
        .values(
            balance_micros=CreditAccount.balance_micros - expired + allowance,
            allowance_period=period,
            allowance_left_micros=allowance,
            updated_at=now,
        ),
    )
    log.info("allowance for %s: %s credits for %s", username, format_credits(allowance), period)


# -- budgets ----------------------------------------------------------------------------


def _budget_filter(scope: BudgetScope, subject: str) -> Any:
    return and_(CreditBudget.scope == scope.value, CreditBudget.subject == subject)


def _roll_budget(session: Session, scope: BudgetScope, subject: str, now: datetime) -> None:
    """Start a new month's count for a monthly budget (a no-op within the month)."""
    period = period_of(now)
    _count(
        session,
        update(CreditBudget)
        .where(
            _budget_filter(scope, subject),
            CreditBudget.period == BudgetPeriod.month.value,
            CreditBudget.period_key < period,
        )
        .values(period_key=period, spent_micros=0),
    )


def _hold_budget(
    session: Session, scope: BudgetScope, subject: str, amount: int, now: datetime
) -> None:
    _roll_budget(session, scope, subject, now)
    held = _count(
        session,
        update(CreditBudget)
        .where(
            _budget_filter(scope, subject),
            or_(
                CreditBudget.limit_micros.is_(None),
                CreditBudget.spent_micros + CreditBudget.reserved_micros + amount
                <= CreditBudget.limit_micros,
            ),
        )
        .values(reserved_micros=CreditBudget.reserved_micros + amount),
    )
    if held:
        return
    row = session.execute(
        select(
            CreditBudget.limit_micros, CreditBudget.spent_micros, CreditBudget.reserved_micros
        ).where(_budget_filter(scope, subject))
    ).one()
    room = max(0, (row.limit_micros or 0) - row.spent_micros - row.reserved_micros)
    what = "your budget" if scope is BudgetScope.user else "the project's budget"
    msg = (
        f"this model call may cost up to {format_credits(amount)} credits, but {what} has "
        f"{format_credits(room)} credits left"
    )
    raise InsufficientCredits(
        msg, needed_micros=amount, available_micros=room, limit=f"{scope.value}_budget"
    )


def _existing_budgets(session: Session, username: str, project_id: str | None) -> set[BudgetScope]:
    conds = [_budget_filter(BudgetScope.user, username)]
    if project_id:
        conds.append(_budget_filter(BudgetScope.project, project_id))
    return {BudgetScope(s) for s in session.scalars(select(CreditBudget.scope).where(or_(*conds)))}


# -- reserve / settle / release ---------------------------------------------------------


def reservation_by_key(session: Session, key: str) -> Reservation | None:
    row = session.scalar(select(CreditReservation).where(CreditReservation.key == key))
    return Reservation.from_row(row) if row is not None else None


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
    """Hold ``amount`` for a model call, or raise InsufficientCredits and change nothing."""
    existing = reservation_by_key(session, key)
    if existing is not None:
        return existing
    ensure_account(session, username, now, default_allowance)
    user_held = project_held = False
    if amount > 0:
        # The one statement that decides whether the credits exist: no read comes first.
        held = _count(
            session,
            update(CreditAccount)
            .where(
                CreditAccount.username == username,
                CreditAccount.balance_micros - CreditAccount.reserved_micros >= amount,
            )
            .values(reserved_micros=CreditAccount.reserved_micros + amount, updated_at=now),
        )
        if not held:
            available = session.scalar(
                select(CreditAccount.balance_micros - CreditAccount.reserved_micros).where(
                    CreditAccount.username == username
                )
            )
            msg = (
                f"this model call may cost up to {format_credits(amount)} credits and "
                f"{format_credits(available or 0)} are available; ask an admin for credits"
            )
            raise InsufficientCredits(
                msg, needed_micros=amount, available_micros=available or 0, limit="credits"
            )
        budgets = _existing_budgets(session, username, project_id)
        if BudgetScope.user in budgets:
            _hold_budget(session, BudgetScope.user, username, amount, now)
            user_held = True
        if project_id and BudgetScope.project in budgets:
            _hold_budget(session, BudgetScope.project, project_id, amount, now)
            project_held = True
    row = CreditReservation(
        id=new_id(),
        key=key,
        username=username,
        project_id=project_id,
        run_id=run_id,
        model=model,
        amount_micros=amount,
        user_budget_held=user_held,
        project_budget_held=project_held,
        status=ReservationStatus.open.value,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(row)
    session.add(
        LedgerEntry(
            key=f"reservation:{key}",
            ts=now,
            username=username,
            kind=EntryKind.reservation.value,
            hold_micros=amount,
            project_id=project_id,
            run_id=run_id,
            reservation_id=row.id,
            model=model,
        )
    )
    # A concurrent reservation with the same key makes this flush fail; the caller rolls
    # back and returns that one instead.
    session.flush()
    return Reservation.from_row(row)


def _unhold_budgets(
    session: Session,
    row: CreditReservation,
    *,
    spent: int,
    hold: int,
    held: bool,
    now: datetime,
) -> None:
    """Count ``spent`` against the budgets and let go of the holds this reservation has."""
    scopes = [(BudgetScope.user, row.username, held and row.user_budget_held)]
    if row.project_id:
        scopes.append((BudgetScope.project, row.project_id, held and row.project_budget_held))
    for scope, subject, budget_held in scopes:
        if not budget_held and spent == 0:
            continue
        _roll_budget(session, scope, subject, now)
        _count(
            session,
            update(CreditBudget)
            .where(_budget_filter(scope, subject))
            .values(
                spent_micros=CreditBudget.spent_micros + spent,
                reserved_micros=CreditBudget.reserved_micros - (hold if budget_held else 0),
                updated_at=now,
            ),
        )


def _payable(
    session: Session, row: CreditReservation, cost: int, hold: int, held: bool, now: datetime
) -> int:
    """The most of ``cost`` that can be charged without a negative balance or a broken cap."""
    acct = session.execute(
        select(CreditAccount.balance_micros, CreditAccount.reserved_micros)
        .where(CreditAccount.username == row.username)
        .with_for_update()
    ).one()
    charge = min(cost, max(0, acct.balance_micros - acct.reserved_micros + hold))
    scopes = [(BudgetScope.user, row.username, held and row.user_budget_held)]
    if row.project_id:
        scopes.append((BudgetScope.project, row.project_id, held and row.project_budget_held))
    for scope, subject, budget_held in scopes:
        _roll_budget(session, scope, subject, now)
        budget = session.execute(
            select(
                CreditBudget.limit_micros, CreditBudget.spent_micros, CreditBudget.reserved_micros
            )
            .where(_budget_filter(scope, subject))
            .with_for_update()
        ).first()
        if budget is None or budget.limit_micros is None:
            continue
        room = int(
            budget.limit_micros
            - budget.spent_micros
            - budget.reserved_micros
            + (hold if budget_held else 0)
        )
        charge = min(charge, max(0, room))
    return int(charge)


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
    ledger_key = f"settlement:{key}"
    prior = session.scalar(select(LedgerEntry.amount_micros).where(LedgerEntry.key == ledger_key))
    if prior is not None:
        return -prior
    open_ = ReservationStatus.open.value
    claimed = _count(
        session,
        update(CreditReservation)
        .where(CreditReservation.id == reservation_id, CreditReservation.status == open_)
        .values(status=ReservationStatus.settled.value, closed_at=now),
    )
    row = session.get(CreditReservation, reservation_id, populate_existing=True)
    if row is None:
        msg = f"no reservation {reservation_id}"
        raise NotFound(msg)
    held = True
    if not claimed:
        if row.status == ReservationStatus.settled.value:
            # One reservation is one model call: a second report under another key is the
            # same usage again, so it charges nothing more.
            log.warning("reservation %s is already settled; not charging again", row.id)
            return row.cost_micros or 0
        # Released (expired, or let go before the usage arrived): the provider still billed
        # the tokens, so charge them now without a hold to let go.
        late = _count(
            session,
            update(CreditReservation)
            .where(
                CreditReservation.id == reservation_id,
                CreditReservation.status == ReservationStatus.released.value,
            )
            .values(status=ReservationStatus.settled.value, closed_at=now),
        )
        if not late:
            session.refresh(row)
            return row.cost_micros or 0
        held = False
    hold = row.amount_micros if held else 0
    charge = _payable(session, row, cost, hold, held, now)
    _count(
        session,
        update(CreditAccount)
        .where(CreditAccount.username == row.username)
        .values(
            balance_micros=CreditAccount.balance_micros - charge,
            reserved_micros=CreditAccount.reserved_micros - hold,
            # Spending draws on this month's allowance first.
            allowance_left_micros=case(
                (
                    CreditAccount.allowance_left_micros > charge,
                    CreditAccount.allowance_left_micros - charge,
                ),
                else_=0,
            ),
            updated_at=now,
        ),
    )
    _unhold_budgets(session, row, spent=charge, hold=hold, held=held, now=now)
    row.cost_micros = charge
    row.reason = "settled" if held else f"settled late ({row.reason})"
    details: dict[str, Any] = {"cost_micros": cost}
    if charge < cost:
        details["uncharged_micros"] = cost - charge
        log.warning(
            "reservation %s: call cost %s credits, only %s could be charged",
            row.id,
            format_credits(cost),
            format_credits(charge),
        )
    if not held:
        details["late"] = True
    session.add(
        LedgerEntry(
            key=ledger_key,
            ts=now,
            username=row.username,
            kind=EntryKind.settlement.value,
            amount_micros=-charge,
            hold_micros=-hold,
            project_id=row.project_id,
            run_id=row.run_id,
            reservation_id=row.id,
            model=row.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            details=details,
        )
    )
    session.flush()
    return charge


def release(session: Session, *, reservation_id: str, reason: str, now: datetime) -> bool:
    """Let a reservation go without a charge; False when it was no longer open."""
    claimed = _count(
        session,
        update(CreditReservation)
        .where(
            CreditReservation.id == reservation_id,
            CreditReservation.status == ReservationStatus.open.value,
        )
        .values(status=ReservationStatus.released.value, closed_at=now, reason=reason[:500]),
    )
    if not claimed:
        return False
    row = session.get(CreditReservation, reservation_id, populate_existing=True)
    assert row is not None  # the UPDATE above just found it
    hold = row.amount_micros
    _count(
        session,
        update(CreditAccount)
        .where(CreditAccount.username == row.username)
        .values(reserved_micros=CreditAccount.reserved_micros - hold, updated_at=now),
    )
    _unhold_budgets(session, row, spent=0, hold=hold, held=True, now=now)
    session.add(
        LedgerEntry(
            key=f"release:{row.id}",
            ts=now,
            username=row.username,
            kind=EntryKind.release.value,
            hold_micros=-hold,
            project_id=row.project_id,
            run_id=row.run_id,
            reservation_id=row.id,
            model=row.model,
            note=reason[:500],
        )
    )
    session.flush()
    return True


EXPIRY_BATCH = 500


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
        session.execute(
            select(CreditAccount.username)
            .where(CreditAccount.username == username)
            .with_for_update()
        ).one()
        refundable = run_charges(session, run_id, username)
        if refundable <= 0:
            msg = f"run {run_id} has nothing left to refund to {username}"
            raise InvalidInput(msg, field="run_id")
        amount = min(amount, refundable)
        project_id = session.scalar(
            select(LedgerEntry.project_id).where(LedgerEntry.run_id == run_id).limit(1)
        )
    _count(
        session,
        update(CreditAccount)
        .where(CreditAccount.username == username)
        .values(balance_micros=CreditAccount.balance_micros + amount, updated_at=now),
    )
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
