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
* Locks are always taken in the order reservation → account → budgets (user, then project),
  so concurrent transactions cannot deadlock on PostgreSQL: a user's budget row is only ever
  locked by a transaction that already holds that user's account row.
* The hot path runs prebuilt Core statements, four per reservation and six per settlement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..db.models import new_id
from ..exceptions import InsufficientCredits, NotFound
from . import budgets
from .accounts import (
    ACCOUNT_LOCKED,
    AVAILABLE,
    CHARGE,
    INSERT_ENTRY,
    accounts,
    ensure_account,
    now_param,
    period_of,
    rowcount,
)
from .models import BudgetScope, CreditReservation, EntryKind, ReservationStatus
from .prices import UsageLike, format_credits

log = logging.getLogger(__name__)

EXPIRY_BATCH = 500

holds = cast(Table, CreditReservation.__table__)

# The reservation: one conditional UPDATE, no read before it. It also requires this month's
# allowance to have been given, so a new month (or a new user) takes the slow path once.
_HOLD = (
    update(accounts)
    .where(
        accounts.c.username == bindparam("u"),
        accounts.c.allowance_period >= bindparam("pk"),
        accounts.c.balance_micros - accounts.c.reserved_micros >= bindparam("amt"),
    )
    .values(reserved_micros=accounts.c.reserved_micros + bindparam("amt"), updated_at=now_param())
)
# Moving a reservation from one status to the next, once: the guard against every race.
_CLAIM = (
    update(holds)
    .where(holds.c.id == bindparam("rid"), holds.c.status == bindparam("from_st"))
    .values(status=bindparam("to_st"), closed_at=now_param(), reason=bindparam("why"))
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
    elif not rowcount(conn.execute(_HOLD, hold)):
        # Not enough credits — or a replay, or the first call this month: find out which.
        existing = reservation_by_key(session, key)
        if existing is not None:
            return existing
        ensure_account(session, username, now, default_allowance)
        if not rowcount(conn.execute(_HOLD, hold)):
            available = int(conn.execute(AVAILABLE, {"u": username}).scalar() or 0)
            msg = (
                f"this model call may cost up to {format_credits(amount)} credits and "
                f"{format_credits(available)} are available; ask an admin for credits"
            )
            raise InsufficientCredits(
                msg, needed_micros=amount, available_micros=available, limit="credits"
            )
    if amount > 0:
        for budget in budgets.user_first(
            conn.execute(budgets.APPLYING, {"u": username, "p": project_id}).all()
        ):
            budgets.hold(conn, budget, amount, period)
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
        INSERT_ENTRY,
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
    estimated: bool = False,
    extra: dict[str, Any] | None = None,
) -> int:
    """Charge a call's real cost against its reservation and let the rest go; ``estimated``
    marks an entry whose tokens were estimated because the provider never reported them;
    ``extra`` joins the entry's details (what a GPU slice measured)."""
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
    acct = conn.execute(ACCOUNT_LOCKED, {"u": row.username}).first()
    # The most that can be charged: never below zero, never past a budget's cap.
    charge = min(cost, max(0, acct.balance_micros - acct.reserved_micros + hold)) if acct else 0
    period = period_of(now)
    found = budgets.user_first(
        conn.execute(budgets.APPLYING_LOCKED, {"u": row.username, "p": row.project_id}).all()
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
        if budgets.is_stale(budget, period):
            conn.execute(budgets.ROLL, {"sc": budget.scope, "sj": budget.subject, "pk": period})
            spent = 0
        if budget.limit_micros is not None:
            room = budget.limit_micros - spent - budget.reserved_micros + unhold
            charge = min(charge, max(0, room))
        unholds.append((budget, unhold))
    for budget, unhold in unholds:
        conn.execute(
            budgets.SPEND,
            {
                "sc": budget.scope,
                "sj": budget.subject,
                "spend": charge,
                "unhold": unhold,
                "ts_now": now,
            },
        )
    if acct is not None:
        conn.execute(CHARGE, {"u": row.username, "charge": charge, "unhold": hold, "ts_now": now})
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
    if estimated:
        details["estimated"] = True
    if extra:
        details.update(extra)
    conn.execute(
        INSERT_ENTRY,
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
        conn.execute(CHARGE, {"u": row.username, "charge": 0, "unhold": hold, "ts_now": now})
        scopes = [(BudgetScope.user.value, row.username, row.user_budget_held)]
        scopes.append((BudgetScope.project.value, row.project_id, row.project_budget_held))
        for scope, subject, budget_held in scopes:
            if budget_held:
                conn.execute(
                    budgets.SPEND,
                    {"sc": scope, "sj": subject, "spend": 0, "unhold": hold, "ts_now": now},
                )
    conn.execute(
        INSERT_ENTRY,
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


def open_reservation_ids_of_run(session: Session, run_id: str) -> list[str]:
    return list(
        session.scalars(
            select(CreditReservation.id).where(
                CreditReservation.run_id == run_id,
                CreditReservation.status == ReservationStatus.open.value,
            )
        )
    )
