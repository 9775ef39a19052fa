"""Reserve → settle/release around a model call, allowances, budgets, expiry and refunds."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from ecode_jupyter.agent.providers.base import Usage
from ecode_jupyter.billing import BillingManager, PriceTable
from ecode_jupyter.billing.models import BudgetPeriod, BudgetScope, LedgerEntry
from ecode_jupyter.db import Database
from ecode_jupyter.exceptions import Forbidden, InsufficientCredits, InvalidInput
from ecode_jupyter.identity import EcodeUser

from .conftest import ADMIN, TEST_MODEL, Clock, make_project, unique_name


async def _funded(billing: BillingManager, micros: int) -> str:
    user = unique_name()
    await billing.grant(ADMIN, username=user, amount_micros=micros, key=f"fund-{user}")
    return user


async def _reserve(
    billing: BillingManager,
    user: str,
    key: str,
    *,
    project: str = "p1",
    tokens: int = 1000,
    max_out: int = 500,
    model: str = TEST_MODEL,
) -> Any:
    return await billing.reserve(
        user=user,
        project_id=project,
        run_id=f"run-{key}",
        model=model,
        input_tokens_estimate=tokens,
        max_output_tokens=max_out,
        key=key,
    )


async def test_settle_charges_real_usage_and_releases_the_rest(billing: BillingManager) -> None:
    user = await _funded(billing, 10_000)
    res = await _reserve(billing, user, "call-1")
    # Estimate: 1000 input tokens at the dearest input price (1.25) + 500 output at 2.
    assert res.amount_micros == 1250 + 1000
    held = await billing.account_summary(user)
    assert (held["balance_micros"], held["reserved_micros"]) == (10_000, 2250)
    assert held["available"] == "0.007750"
    cost = await billing.settle(res, Usage(800, 300, 100, 0), key="call-1/usage")
    assert cost == 800 + 600 + 10
    after = await billing.account_summary(user)
    assert (after["balance_micros"], after["reserved_micros"]) == (10_000 - cost, 0)
    assert await billing.run_cost("run-call-1") == cost


async def test_replayed_reservation_and_settlement_charge_once(billing: BillingManager) -> None:
    user = await _funded(billing, 10_000)
    first = await _reserve(billing, user, "k")
    again = await _reserve(billing, user, "k")
    assert again.id == first.id
    assert (await billing.account_summary(user))["reserved_micros"] == first.amount_micros
    charges = [await billing.settle(first, Usage(100, 100), key="k/settle") for _ in range(3)]
    assert charges == [300, 300, 300]
    # A second report under another key is the same call: nothing more is charged.
    assert await billing.settle(first, Usage(999, 999), key="k/other") == 300
    assert (await billing.account_summary(user))["balance_micros"] == 10_000 - 300


async def test_a_stream_cut_midway_still_settles_its_partial_usage(
    billing: BillingManager,
) -> None:
    """The provider billed the prompt and some output before the stream broke."""
    user = await _funded(billing, 100_000)
    res = await _reserve(billing, user, "cut", tokens=20_000, max_out=8_000)
    partial = Usage(input_tokens=19_500, output_tokens=37)
    cost = await billing.settle(res, partial, key="cut/usage")
    assert cost == 19_500 + 74
    account = await billing.account_summary(user)
    assert account["reserved_micros"] == 0
    assert account["balance_micros"] == 100_000 - cost
    # The agent may also release on the error path: the settled call stays settled.
    await billing.release(res, reason="stream cut")
    assert (await billing.account_summary(user))["balance_micros"] == 100_000 - cost


async def test_usage_arriving_after_release_or_expiry_is_still_charged(
    billing: BillingManager, billing_clock: Clock
) -> None:
    user = await _funded(billing, 10_000)
    released = await _reserve(billing, user, "early-release")
    await billing.release(released, reason="disconnected")
    await billing.release(released, reason="disconnected")  # idempotent
    assert (await billing.account_summary(user))["reserved_micros"] == 0
    assert await billing.settle(released, Usage(500, 0), key="early-release/usage") == 500

    expiring = await _reserve(billing, user, "slow")
    billing_clock.advance(seconds=601)
    assert await billing.reconcile_expired() == 1
    assert await billing.reconcile_expired() == 0
    summary = await billing.account_summary(user)
    assert (summary["reserved_micros"], summary["open_reservations"]) == (0, 0)
    assert await billing.settle(expiring, Usage(200, 100), key="slow/usage") == 400
    assert (await billing.account_summary(user))["balance_micros"] == 10_000 - 500 - 400


async def test_reservation_beyond_the_balance_is_refused_with_details(
    billing: BillingManager,
) -> None:
    user = await _funded(billing, 2000)
    with pytest.raises(InsufficientCredits) as info:
        await _reserve(billing, user, "too-big")
    assert info.value.status == 402
    assert info.value.details == {
        "needed_micros": 2250,
        "available_micros": 2000,
        "limit": "credits",
    }
    account = await billing.account_summary(user)
    assert (account["balance_micros"], account["reserved_micros"]) == (2000, 0)
    assert account["open_reservations"] == 0


async def test_cost_above_the_reservation_is_capped_at_what_the_user_has(
    billing: BillingManager, ecode_db: Database
) -> None:
    """The estimate was short and the balance cannot pay it all: charge what is there."""
    user = await _funded(billing, 3000)
    res = await _reserve(billing, user, "short", tokens=100, max_out=100)
    cost = await billing.settle(res, Usage(5000, 0), key="short/usage")
    assert cost == 3000
    account = await billing.account_summary(user)
    assert (account["balance_micros"], account["reserved_micros"]) == (0, 0)
    details = ecode_db.call(
        lambda s: s.scalar(
            select(LedgerEntry.details).where(LedgerEntry.key == "settlement:short/usage")
        )
    )
    assert details == {"cost_micros": 5000, "uncharged_micros": 2000}


async def test_free_and_unpriced_models(billing: BillingManager) -> None:
    user = unique_name()  # no credits at all
    await billing.check_model("offline")
    res = await _reserve(billing, user, "offline-1", model="offline", tokens=10**6)
    assert res.amount_micros == 0
    assert await billing.settle(res, Usage(10**6, 10**5), key="offline-1/usage") == 0
    with pytest.raises(InvalidInput, match="no price"):
        await billing.check_model("mystery-model")
    with pytest.raises(InvalidInput):
        await _reserve(billing, user, "mystery", model="mystery-model")


async def test_monthly_allowance_tops_up_once_and_the_unspent_part_lapses(
    ecode_db: Database,
) -> None:
    clock = Clock()
    billing = BillingManager(
        ecode_db,
        PriceTable({TEST_MODEL: {"input": 1_000_000, "output": 2_000_000}}),
        monthly_allowance_micros=5000,
        clock=clock,
    )
    user = unique_name()
    assert (await billing.account_summary(user))["balance_micros"] == 5000
    assert (await billing.account_summary(user))["balance_micros"] == 5000
    await billing.grant(ADMIN, username=user, amount_micros=1000, key=f"g-{user}")
    res = await _reserve(billing, user, f"{user}-a", tokens=1000, max_out=0)
    await billing.settle(res, Usage(1000, 0), key=f"{user}-a/usage")
    # 1000 of the 5000 allowance spent; 4000 lapse at the turn of the month, the grant stays.
    clock.advance(days=31)
    summary = await billing.account_summary(user)
    assert summary["balance_micros"] == 1000 + 5000
    assert summary["allowance"]["left_micros"] == 5000
    kinds = ecode_db.call(
        lambda s: sorted(
            (e.kind, e.amount_micros, e.key)
            for e in s.scalars(select(LedgerEntry).where(LedgerEntry.username == user))
            if e.kind in ("allowance", "expiry")
        )
    )
    assert kinds == [
        ("allowance", 5000, f"allowance:{user}:2026-03"),
        ("allowance", 5000, f"allowance:{user}:2026-04"),
        ("expiry", -4000, f"expiry:{user}:2026-03"),
    ]


async def test_project_budget_caps_spend_across_users(
    billing: BillingManager, ecode_db: Database
) -> None:
    alice, bob = await _funded(billing, 100_000), await _funded(billing, 100_000)
    project = make_project(ecode_db, alice)
    budget = await billing.set_budget(
        ADMIN, scope=BudgetScope.project, subject=project, limit_micros=5000
    )
    assert budget["period"] == "total"
    a = await _reserve(billing, alice, "a", project=project)  # holds 2250
    b = await _reserve(billing, bob, "b", project=project)  # holds 2250
    with pytest.raises(InsufficientCredits) as info:
        await _reserve(billing, bob, "c", project=project)
    assert info.value.details["limit"] == "project_budget"
    assert info.value.details["available_micros"] == 500
    await billing.settle(a, Usage(1000, 0), key="a/u")
    await billing.release(b, reason="cancelled")
    summary = await billing.account_summary(alice)
    [row] = summary["budgets"]["projects"]
    assert (row["spent_micros"], row["reserved_micros"], row["left_micros"]) == (1000, 0, 4000)
    # Other projects are not limited by it.
    await _reserve(billing, bob, "elsewhere", project="another-project")


async def test_user_budget_counts_per_month(billing: BillingManager, billing_clock: Clock) -> None:
    user = await _funded(billing, 100_000)
    await billing.set_budget(
        ADMIN, scope=BudgetScope.user, subject=user, limit_micros=3000, period=BudgetPeriod.month
    )
    res = await _reserve(billing, user, "m1")
    await billing.settle(res, Usage(1000, 500), key="m1/u")
    with pytest.raises(InsufficientCredits) as info:
        await _reserve(billing, user, "m2")
    assert info.value.details["limit"] == "user_budget"
    billing_clock.advance(days=31)
    await _reserve(billing, user, "m3")  # a new month, a new budget
    summary = await billing.account_summary(user)
    assert summary["budgets"]["user"]["spent_micros"] == 0
    assert summary["budgets"]["user"]["reserved_micros"] == 2250


async def test_grants_budgets_and_refunds_are_for_admins(billing: BillingManager) -> None:
    alice = EcodeUser("alice", "Alice", False)
    with pytest.raises(Forbidden):
        await billing.grant(alice, username="alice", amount_micros=10**9)
    with pytest.raises(Forbidden):
        await billing.set_budget(alice, scope=BudgetScope.user, subject="alice", limit_micros=None)
    user = await _funded(billing, 10_000)
    res = await _reserve(billing, user, "refund-me")
    await billing.settle(res, Usage(1000, 0), key="refund-me/u")
    entry, created = await billing.refund(
        ADMIN, username=user, run_id="run-refund-me", amount_micros=10**6, key="r1"
    )
    # A refund gives back at most what the run cost, once.
    assert created and entry["amount_micros"] == 1000
    again, created = await billing.refund(
        ADMIN, username=user, run_id="run-refund-me", amount_micros=10**6, key="r1"
    )
    assert not created and again["id"] == entry["id"]
    with pytest.raises(InvalidInput, match="nothing left"):
        await billing.refund(ADMIN, username=user, run_id="run-refund-me", amount_micros=1)
    assert (await billing.account_summary(user))["balance_micros"] == 10_000
    assert await billing.run_cost("run-refund-me") == 0


async def test_usage_groups_by_model_project_and_day(
    billing: BillingManager, ecode_db: Database
) -> None:
    user = await _funded(billing, 10**6)
    project = make_project(ecode_db, user, name="Reports")
    for n, model in enumerate([TEST_MODEL, TEST_MODEL, "offline"]):
        res = await _reserve(billing, user, f"u{n}", project=project, model=model)
        await billing.settle(res, Usage(100, 10, 5, 1), key=f"u{n}/s")
    by_model = {r["group"]: r for r in await billing.usage(user, group="model")}
    assert by_model[TEST_MODEL]["calls"] == 2
    # 100 + 2 * 10 + 0.1 * 5 + 1.25 * 1 = 121.75, rounded up once per call
    assert by_model[TEST_MODEL]["cost_micros"] == 2 * 122
    assert by_model["offline"]["cost_micros"] == 0
    [by_project] = await billing.usage(user, group="project")
    assert (by_project["label"], by_project["calls"]) == ("Reports", 3)
    [by_day] = await billing.usage(user, group="day")
    assert by_day["group"] == "2026-03-14"
    total = ecode_db.call(
        lambda s: s.scalar(
            select(func.sum(LedgerEntry.amount_micros)).where(LedgerEntry.username == user)
        )
    )
    assert total == 10**6 - by_project["cost_micros"]
