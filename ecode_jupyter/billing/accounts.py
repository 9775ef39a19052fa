"""Accounts: creation, the monthly allowance, grants and refunds, and the shared statements.

Every function here runs inside the caller's transaction (``Database.run``). The allowance is
given on first use each month, once — its ledger key is ``allowance:<user>:<YYYY-MM>`` — and
what is left of last month's allowance lapses first (``expiry:<user>:<YYYY-MM>``); granted
credits never lapse. Spending draws on the allowance first.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import BindParameter, Table, bindparam, case, func, insert, select, update
from sqlalchemy.engine import Connection, CursorResult, Result
from sqlalchemy.orm import Session

from ..db.models import UTCDateTime
from ..exceptions import InvalidInput
from .models import CreditAccount, EntryKind, LedgerEntry
from .prices import format_credits

log = logging.getLogger(__name__)

accounts = cast(Table, CreditAccount.__table__)
entries = cast(Table, LedgerEntry.__table__)


def now_param() -> BindParameter[datetime]:
    return bindparam("ts_now", type_=UTCDateTime())


# Statements of the hot path are built once: constructing a SQLAlchemy statement costs more
# Python time than SQLite takes to run it. Parameter names differ from column names, which
# SQLAlchemy reserves in SET clauses.
AVAILABLE = select(accounts.c.balance_micros - accounts.c.reserved_micros).where(
    accounts.c.username == bindparam("u")
)
ACCOUNT_LOCKED = (
    select(accounts.c.balance_micros, accounts.c.reserved_micros)
    .where(accounts.c.username == bindparam("u"))
    .with_for_update()
)
CHARGE = (
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
        updated_at=now_param(),
    )
)
ADD = (
    update(accounts)
    .where(accounts.c.username == bindparam("u"))
    .values(balance_micros=accounts.c.balance_micros + bindparam("amt"), updated_at=now_param())
)
INSERT_ENTRY = insert(entries)


def period_of(now: datetime) -> str:
    """The calendar month (UTC) ``now`` falls in, as ``YYYY-MM``."""
    return f"{now.year:04d}-{now.month:02d}"


def month_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def next_month(now: datetime) -> datetime:
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)


def rowcount(result: Result[Any]) -> int:
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
            INSERT_ENTRY,
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
            INSERT_ENTRY,
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


def set_allowance(
    session: Session, username: str, monthly_micros: int | None, now: datetime
) -> str | None:
    """Store a user's own allowance; returns the month the account was last topped up for."""
    insert_ignore(session, accounts, new_account(username, now))
    acct = session.execute(
        select(CreditAccount).where(CreditAccount.username == username).with_for_update()
    ).scalar_one()
    acct.monthly_allowance_micros = monthly_micros
    acct.updated_at = now
    return acct.allowance_period


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
        session.execute(ACCOUNT_LOCKED, {"u": username}).one()
        refundable = run_charges(session, run_id, username)
        if refundable <= 0:
            msg = f"run {run_id} has nothing left to refund to {username}"
            raise InvalidInput(msg, field="run_id")
        amount = min(amount, refundable)
        project_id = session.scalar(
            select(LedgerEntry.project_id).where(LedgerEntry.run_id == run_id).limit(1)
        )
    session.execute(ADD, {"u": username, "amt": amount, "ts_now": now})
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
