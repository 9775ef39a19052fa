"""Reservations a crash left open are released when the server starts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from ecode_jupyter.billing import BillingManager, PriceTable
from ecode_jupyter.db import Database
from ecode_jupyter.db.models import utcnow
from ecode_jupyter.identity import EcodeUser

from .conftest import TEST_MODEL, TEST_PRICES, Clock

ADMIN = EcodeUser("admin", "Admin", True)


@pytest.fixture
def crashed_reservation(
    ecode_database_url: str, jp_asyncio_loop: asyncio.AbstractEventLoop
) -> dict[str, Any]:
    """Before the server starts: a call reserved credits an hour ago and never reported."""
    db = Database(ecode_database_url)
    billing = BillingManager(
        db,
        PriceTable(TEST_PRICES),
        reservation_ttl_s=60,
        clock=Clock(utcnow() - timedelta(hours=1)),
    )

    async def crash() -> dict[str, Any]:
        await billing.grant(ADMIN, username="alice", amount_micros=10_000, key="startup")
        res = await billing.reserve(
            user="alice",
            project_id="p",
            run_id="crashed-run",
            model=TEST_MODEL,
            input_tokens_estimate=1000,
            max_output_tokens=500,
            key="crashed-call",
        )
        return {"reservation": res, "before": await billing.account_summary("alice")}

    try:
        return jp_asyncio_loop.run_until_complete(crash())
    finally:
        db.dispose()


@pytest.fixture
def ecode_extra_config(crashed_reservation: dict[str, Any]) -> dict[str, Any]:
    # Depending on the seeded reservation makes it exist before the server starts.
    return {"EcodeApp": {"model_prices": TEST_PRICES}}


async def test_expired_reservations_are_released_at_start_up(
    ecode_api: Any, ecode_app: Any, jp_serverapp: Any, crashed_reservation: dict[str, Any]
) -> None:
    assert crashed_reservation["before"]["reserved_micros"] == 2250
    # What jupyter_server runs once its loop starts (pytest-jupyter never starts that loop).
    await ecode_app._start_jupyter_server_extension(jp_serverapp)
    for _ in range(200):
        account = (await ecode_api("GET", "billing/account", user="alice")).body
        if account["open_reservations"] == 0:
            break
        await asyncio.sleep(0.05)
    assert account["open_reservations"] == 0
    assert account["reserved_micros"] == 0
    assert account["available_micros"] == account["balance_micros"]
