"""Property tests: any sequence of billing operations keeps the ledger's invariants.

After every step of a random sequence — grants, reservations, settlements (replayed and
under reused keys), releases, expiry sweeps, months turning, with a user and a project budget
in force — on whatever database the suite runs on:

* no balance is negative, and holds never exceed the balance;
* the ledger's sums equal each account's balance and reserved amount;
* what is reserved equals what open reservations hold (for accounts and budgets);
* each idempotency key is in the ledger once, and a replayed report returns the first charge;
* no budget has more spent than its cap.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ecode_jupyter.agent.providers.base import Usage
from ecode_jupyter.billing import BillingManager, PriceTable, Reservation
from ecode_jupyter.billing.models import (
    BudgetPeriod,
    BudgetScope,
    CreditAccount,
    CreditBudget,
    CreditReservation,
    LedgerEntry,
)
from ecode_jupyter.db import Database
from ecode_jupyter.exceptions import InsufficientCredits

from .conftest import ADMIN, TEST_MODEL, TEST_PRICES, Clock, make_project, unique_name

USERS = 2
usage_st = st.builds(
    Usage,
    st.integers(0, 4000),
    st.integers(0, 3000),
    st.integers(0, 2000),
    st.integers(0, 1000),
)
op_st = st.one_of(
    st.tuples(
        st.just("grant"), st.integers(0, USERS - 1), st.integers(1, 20_000), st.integers(0, 3)
    ),
    st.tuples(
        st.just("reserve"),
        st.integers(0, USERS - 1),
        st.integers(0, 1),
        st.integers(0, 3000),
        st.integers(0, 3000),
        st.integers(0, 12),
    ),
    st.tuples(st.just("settle"), st.integers(0, 20), usage_st, st.integers(0, 1)),
    st.tuples(st.just("release"), st.integers(0, 20)),
    st.tuples(st.just("expire")),
    st.tuples(st.just("month")),
)


def _check(session: Session, users: list[str], budgets: list[tuple[str, str]]) -> None:
    for user in users:
        acct = session.get(CreditAccount, user)
        sums = session.execute(
            select(
                func.coalesce(func.sum(LedgerEntry.amount_micros), 0),
                func.coalesce(func.sum(LedgerEntry.hold_micros), 0),
            ).where(LedgerEntry.username == user)
        ).one()
        if acct is None:
            assert tuple(sums) == (0, 0)
            continue
        assert acct.balance_micros >= 0
        assert 0 <= acct.reserved_micros <= acct.balance_micros
        assert (sums[0], sums[1]) == (acct.balance_micros, acct.reserved_micros)
        open_holds = session.scalar(
            select(func.coalesce(func.sum(CreditReservation.amount_micros), 0)).where(
                CreditReservation.username == user, CreditReservation.status == "open"
            )
        )
        assert open_holds == acct.reserved_micros
        assert acct.allowance_left_micros >= 0
    for scope, subject in budgets:
        budget = session.get(CreditBudget, (scope, subject))
        assert budget is not None
        held_flag = (
            CreditReservation.user_budget_held
            if scope == "user"
            else CreditReservation.project_budget_held
        )
        who = CreditReservation.username if scope == "user" else CreditReservation.project_id
        held = session.scalar(
            select(func.coalesce(func.sum(CreditReservation.amount_micros), 0)).where(
                who == subject, held_flag.is_(True), CreditReservation.status == "open"
            )
        )
        assert budget.reserved_micros == held
        assert budget.limit_micros is not None
        assert budget.spent_micros + budget.reserved_micros <= budget.limit_micros
    per_reservation = session.execute(
        select(LedgerEntry.reservation_id, func.count())
        .where(LedgerEntry.kind == "settlement")
        .group_by(LedgerEntry.reservation_id)
        .having(func.count() > 1)
    ).all()
    assert per_reservation == []


async def _scenario(db: Database, ops: list[tuple[Any, ...]], limits: tuple[int, int]) -> None:
    clock = Clock()
    billing = BillingManager(
        db,
        PriceTable(TEST_PRICES),
        monthly_allowance_micros=3000,
        reservation_ttl_s=60,
        clock=clock,
    )
    users = [unique_name() for _ in range(USERS)]
    projects = [make_project(db, users[0]), make_project(db, users[0])]
    await billing.set_budget(
        ADMIN,
        scope=BudgetScope.user,
        subject=users[0],
        limit_micros=limits[0],
        period=BudgetPeriod.month,
    )
    await billing.set_budget(
        ADMIN, scope=BudgetScope.project, subject=projects[0], limit_micros=limits[1]
    )
    budgets = [("user", users[0]), ("project", projects[0])]
    reservations: list[Reservation] = []
    charged: dict[str, int] = {}  # settle key -> what the first report charged
    prefix = unique_name("k")
    for op in ops:
        kind = op[0]
        if kind == "grant":
            _, u, amount, key = op
            await billing.grant(
                ADMIN, username=users[u], amount_micros=amount, key=f"{prefix}-g{key}"
            )
        elif kind == "reserve":
            _, u, p, tokens, max_out, key = op
            with contextlib.suppress(InsufficientCredits):
                reservations.append(
                    await billing.reserve(
                        user=users[u],
                        project_id=projects[p],
                        run_id=f"{prefix}-run",
                        model=TEST_MODEL,
                        input_tokens_estimate=tokens,
                        max_output_tokens=max_out,
                        key=f"{prefix}-r{key}",
                    )
                )
        elif kind == "settle" and reservations:
            _, n, usage, variant = op
            res = reservations[n % len(reservations)]
            key = f"{res.key}/s{variant}"
            cost = await billing.settle(res, usage, key=key)
            assert cost >= 0
            assert charged.setdefault(key, cost) == cost
        elif kind == "release" and reservations:
            await billing.release(reservations[op[1] % len(reservations)], reason="test")
        elif kind == "expire":
            clock.advance(seconds=61)
            await billing.reconcile_expired()
        elif kind == "month":
            clock.advance(days=31)
            for user in users:
                await billing.account_summary(user)
        await db.run(lambda s: _check(s, users, budgets))
    # Every report replayed once more at the end still returns its first charge.
    for res in reservations:
        for variant in (0, 1):
            key = f"{res.key}/s{variant}"
            if key in charged:
                assert await billing.settle(res, Usage(1, 1), key=key) == charged[key]
    await db.run(lambda s: _check(s, users, budgets))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(op_st, max_size=30),
    limits=st.tuples(st.integers(0, 30_000), st.integers(0, 30_000)),
)
def test_ledger_invariants_hold_for_any_sequence(
    ecode_db: Database,
    jp_asyncio_loop: asyncio.AbstractEventLoop,
    ops: list[tuple[Any, ...]],
    limits: tuple[int, int],
) -> None:
    jp_asyncio_loop.run_until_complete(_scenario(ecode_db, ops, limits))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(usage=usage_st, extra_input=st.integers(0, 500), extra_output=st.integers(0, 500))
def test_a_reservation_covers_any_usage_within_its_estimate(
    usage: Usage, extra_input: int, extra_output: int
) -> None:
    """Settling never needs more than was held when the prompt estimate was right."""
    price = PriceTable(TEST_PRICES).price(TEST_MODEL)
    estimate = price.estimate(
        usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens + extra_input,
        usage.output_tokens + extra_output,
    )
    assert 0 <= price.cost(usage) <= estimate
