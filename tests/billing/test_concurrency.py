"""Bursts of parallel calls through separate connections: nothing overspent, nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from ecode_jupyter.agent.providers.base import Usage
from ecode_jupyter.billing import BillingManager, PriceTable, Reservation
from ecode_jupyter.billing.models import BudgetScope, LedgerEntry
from ecode_jupyter.db import Database
from ecode_jupyter.exceptions import InsufficientCredits

from .conftest import ADMIN, TEST_MODEL, TEST_PRICES, Clock, make_project, unique_name

CALLS = 50
AFFORDABLE = 5


@pytest.fixture
def wide_billing(ecode_database_url: str) -> Iterator[BillingManager]:
    """A manager whose database runs 25 transactions at once, each on its own connection."""
    db = Database(ecode_database_url, pool_size=25)
    yield BillingManager(db, PriceTable(TEST_PRICES), clock=Clock())
    db.dispose()


async def _burst(billing: BillingManager, users: list[str], project: str) -> list[Any]:
    return await asyncio.gather(
        *(
            billing.reserve(
                user=users[n % len(users)],
                project_id=project,
                run_id=f"run-{n}",
                model=TEST_MODEL,
                input_tokens_estimate=1000,
                max_output_tokens=500,
                key=f"{project}-call-{n}",
            )
            for n in range(CALLS)
        ),
        return_exceptions=True,
    )


def _split(results: list[Any]) -> tuple[list[Reservation], list[InsufficientCredits]]:
    unexpected = [r for r in results if not isinstance(r, Reservation | InsufficientCredits)]
    assert unexpected == []
    return (
        [r for r in results if isinstance(r, Reservation)],
        [r for r in results if isinstance(r, InsufficientCredits)],
    )


async def test_fifty_concurrent_calls_against_credits_for_five(
    wide_billing: BillingManager,
) -> None:
    user = unique_name()
    per_call = wide_billing.estimate(TEST_MODEL, 1000, 500)
    await wide_billing.grant(ADMIN, username=user, amount_micros=AFFORDABLE * per_call)
    ok, refused = _split(await _burst(wide_billing, [user], unique_name("p")))
    assert (len(ok), len(refused)) == (AFFORDABLE, CALLS - AFFORDABLE)
    account = await wide_billing.account_summary(user)
    assert account["reserved_micros"] == AFFORDABLE * per_call
    assert account["available_micros"] == 0
    # Every affordable call spends its whole reservation, settled in parallel too.
    await asyncio.gather(
        *(wide_billing.settle(r, Usage(1250, 500), key=f"{r.key}/usage") for r in ok)
    )
    account = await wide_billing.account_summary(user)
    assert (account["balance_micros"], account["reserved_micros"]) == (0, 0)


async def test_fifty_concurrent_calls_against_a_project_budget_for_five(
    wide_billing: BillingManager,
) -> None:
    users = [unique_name() for _ in range(5)]
    for user in users:
        await wide_billing.grant(ADMIN, username=user, amount_micros=10**7)
    project = make_project(wide_billing.db, users[0])
    per_call = wide_billing.estimate(TEST_MODEL, 1000, 500)
    await wide_billing.set_budget(
        ADMIN, scope=BudgetScope.project, subject=project, limit_micros=AFFORDABLE * per_call
    )
    ok, refused = _split(await _burst(wide_billing, users, project))
    assert len(ok) == AFFORDABLE
    assert {e.details["limit"] for e in refused} == {"project_budget"}
    summary = await wide_billing.account_summary(users[0])
    [budget] = summary["budgets"]["projects"]
    assert budget["reserved_micros"] == AFFORDABLE * per_call
    assert budget["left_micros"] == 0


async def test_every_usage_report_replayed_three_times_charges_once(
    wide_billing: BillingManager,
) -> None:
    user = unique_name()
    await wide_billing.grant(ADMIN, username=user, amount_micros=10**6)
    reservations = [
        await wide_billing.reserve(
            user=user,
            project_id="p",
            run_id="run-replay",
            model=TEST_MODEL,
            input_tokens_estimate=1000,
            max_output_tokens=500,
            key=f"replay-{n}",
        )
        for n in range(10)
    ]
    # Three copies of each report, all at once, then the same again one by one.
    concurrent = await asyncio.gather(
        *(
            wide_billing.settle(r, Usage(400 + n, 100), key=f"{r.key}/usage")
            for n, r in enumerate(reservations)
            for _ in range(3)
        )
    )
    sequential = [
        await wide_billing.settle(r, Usage(400 + n, 100), key=f"{r.key}/usage")
        for n, r in enumerate(reservations)
        for _ in range(3)
    ]
    expected = [400 + n + 200 for n in range(10) for _ in range(3)]
    assert concurrent == expected
    assert sequential == expected
    charged = sum(400 + n + 200 for n in range(10))
    assert await wide_billing.run_cost("run-replay") == charged
    account = await wide_billing.account_summary(user)
    assert (account["balance_micros"], account["reserved_micros"]) == (10**6 - charged, 0)
    settlements = wide_billing.db.call(
        lambda s: s.scalar(
            select(func.count()).where(
                LedgerEntry.username == user, LedgerEntry.kind == "settlement"
            )
        )
    )
    assert settlements == 10


async def test_concurrent_replays_of_one_reservation_hold_once(
    wide_billing: BillingManager,
) -> None:
    user = unique_name()
    await wide_billing.grant(ADMIN, username=user, amount_micros=10**6)
    results = await asyncio.gather(
        *(
            wide_billing.reserve(
                user=user,
                project_id="p",
                run_id="r",
                model=TEST_MODEL,
                input_tokens_estimate=1000,
                max_output_tokens=500,
                key="same-key",
            )
            for _ in range(20)
        )
    )
    assert len({r.id for r in results}) == 1
    account = await wide_billing.account_summary(user)
    assert account["reserved_micros"] == results[0].amount_micros
