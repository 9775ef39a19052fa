"""The billing REST API: account, usage (JSON and CSV), prices, quotes, admin grants, budgets."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from ecode_jupyter.agent.providers.base import Usage
from ecode_jupyter.billing import BillingManager


@pytest.fixture
def ecode_extra_config() -> dict[str, Any]:
    return {
        "EcodeApp": {
            "monthly_allowance": 2.0,
            "model_prices": {"house-model": {"input": 1_000_000, "output": 2_000_000}},
            "free_models": ["llama3"],
        }
    }


def _billing(ecode_app: Any) -> BillingManager:
    billing = ecode_app.ecode.extras["billing"]
    assert isinstance(billing, BillingManager)
    return billing


async def test_account_shows_the_allowance_and_only_admins_grant(ecode_api: Any) -> None:
    account = (await ecode_api("GET", "billing/account", user="alice")).body
    assert account["user"] == "alice"
    assert (account["balance"], account["available"]) == ("2.000000", "2.000000")
    assert account["allowance"]["monthly_micros"] == 2_000_000

    refused = await ecode_api(
        "POST", "billing/grants", user="alice", body={"user": "alice", "credits": 100}
    )
    assert (refused.status, refused.error_code) == (403, "forbidden")
    grant = {"user": "alice", "credits": "3.5", "note": "welcome", "key": "welcome-alice"}
    first = await ecode_api("POST", "billing/grants", user="admin", body=grant)
    assert first.status == 201
    assert first.body["entry"]["amount_micros"] == 3_500_000
    assert first.body["account"]["balance"] == "5.500000"
    # A retried request with the same key grants nothing more.
    again = await ecode_api("POST", "billing/grants", user="admin", body=grant)
    assert again.status == 200
    assert again.body["entry"]["id"] == first.body["entry"]["id"]
    assert (await ecode_api("GET", "billing/account")).body["balance_micros"] == 5_500_000

    assert (await ecode_api("GET", "billing/account?user=bob", user="alice")).status == 403
    bob = await ecode_api("GET", "billing/account?user=bob", user="admin")
    assert (bob.status, bob.body["user"]) == (200, "bob")
    for bad in (
        {"user": "bob"},
        {"user": "bob", "credits": -1},
        {"user": "bob", "amount_micros": 1.5},
        {"user": "bob", "credits": 1, "x": 1},
    ):
        assert (await ecode_api("POST", "billing/grants", user="admin", body=bad)).status == 400
    audit = await ecode_api("GET", "audit?action=credits.grant", user="admin")
    assert [e["target_id"] for e in audit.body["events"]] == ["alice"]


async def test_out_of_credits_is_402_with_the_numbers(ecode_api: Any) -> None:
    small = {"model": "house-model", "input_tokens": 1000, "max_output_tokens": 1000}
    ok = await ecode_api("POST", "billing/quote", user="carol", body=small)
    assert ok.status == 200
    assert ok.body["estimate_micros"] == 3000
    big = {"model": "claude-opus-4-1", "input_tokens": 100_000, "max_output_tokens": 32_000}
    resp = await ecode_api("POST", "billing/quote", user="carol", body=big)
    assert resp.status == 402
    assert resp.error_code == "insufficient_credits"
    details = resp.body["error"]["details"]
    assert details["available_micros"] == 2_000_000
    assert details["needed_micros"] > details["available_micros"]
    assert "credits" in resp.body["error"]["message"]
    free = await ecode_api("POST", "billing/quote", user="carol", body={**big, "model": "llama3"})
    assert (free.status, free.body["free"]) == (200, True)
    unpriced = await ecode_api("POST", "billing/quote", user="carol", body={**big, "model": "x"})
    assert (unpriced.status, unpriced.error_code) == (400, "invalid_input")


async def test_usage_by_model_project_and_day_with_csv_export(
    ecode_api: Any, ecode_app: Any
) -> None:
    project = (await ecode_api("POST", "projects", user="dave", body={"name": "Ledger App"})).body
    billing = _billing(ecode_app)
    for n, model in enumerate(["house-model", "house-model", "llama3"]):
        res = await billing.reserve(
            user="dave",
            project_id=project["id"],
            run_id=f"run-{n}",
            model=model,
            input_tokens_estimate=2000,
            max_output_tokens=1000,
            key=f"rest-{n}",
        )
        await billing.settle(res, Usage(1500, 250), key=f"rest-{n}/usage")

    by_model = await ecode_api("GET", "billing/usage?group=model", user="dave")
    rows = {r["group"]: r for r in by_model.body["rows"]}
    assert rows["house-model"]["calls"] == 2
    assert rows["house-model"]["cost_micros"] == 2 * (1500 + 500)
    assert rows["llama3"]["cost_micros"] == 0
    assert by_model.body["total"]["cost"] == "0.004000"

    csv_resp = await ecode_api("GET", "billing/usage?group=project&format=csv", user="dave")
    assert csv_resp.status == 200
    assert csv_resp.headers["Content-Type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(csv_resp.body)))
    assert [(r["group"], r["label"], r["calls"], r["cost_micros"]) for r in parsed] == [
        (project["id"], "Ledger App", "3", "4000")
    ]

    by_day = await ecode_api("GET", "billing/usage?group=day", user="dave")
    [day] = by_day.body["rows"]
    assert len(day["group"]) == 10 and day["calls"] == 3
    future = await ecode_api("GET", "billing/usage?group=day&since=2999-01-01", user="dave")
    assert future.body["rows"] == []

    assert (await ecode_api("GET", "billing/usage", user="alice")).body["rows"] == []
    assert (await ecode_api("GET", "billing/usage?user=dave", user="alice")).status == 403
    assert (await ecode_api("GET", "billing/usage?user=*", user="alice")).status == 403
    everyone = await ecode_api("GET", "billing/usage?user=*&group=model", user="admin")
    assert everyone.body["total"]["calls"] == 3
    assert (await ecode_api("GET", "billing/usage?group=week", user="dave")).status == 400
    assert (await ecode_api("GET", "billing/usage?format=xml", user="dave")).status == 400

    cost = await billing.run_cost("run-0")
    assert cost == 2000


async def test_budgets_and_allowances_are_set_by_admins(ecode_api: Any) -> None:
    project = (await ecode_api("POST", "projects", user="alice", body={"name": "Capped"})).body
    body = {"project_id": project["id"], "budget": 1.25}
    assert (await ecode_api("PUT", "billing/budgets", user="alice", body=body)).status == 403
    resp = await ecode_api("PUT", "billing/budgets", user="admin", body=body)
    assert resp.status == 200
    assert resp.body["budget"]["limit_micros"] == 1_250_000
    assert resp.body["budget"]["period"] == "total"
    account = (await ecode_api("GET", "billing/account", user="alice")).body
    [budget] = account["budgets"]["projects"]
    assert (budget["name"], budget["left"]) == ("Capped", "1.250000")

    resp = await ecode_api(
        "PUT",
        "billing/budgets",
        user="admin",
        body={"user": "bob", "monthly_allowance": 7, "budget_micros": 500, "period": "month"},
    )
    assert resp.status == 200
    assert resp.body["allowance"]["monthly_allowance_micros"] == 7_000_000
    bob = (await ecode_api("GET", "billing/account", user="bob")).body
    # bob had never used ecode: the new allowance is his first.
    assert bob["balance"] == "7.000000"
    assert bob["budgets"]["user"]["limit_micros"] == 500
    missing = await ecode_api(
        "PUT", "billing/budgets", user="admin", body={"project_id": "nope", "budget": 1}
    )
    assert missing.status == 404
    for bad in (
        {"budget": 1},
        {"user": "bob", "project_id": project["id"], "budget": 1},
        {"user": "bob"},
        {"user": "bob", "budget": 1, "period": "week"},
        {"project_id": project["id"], "monthly_allowance": 1},
    ):
        assert (await ecode_api("PUT", "billing/budgets", user="admin", body=bad)).status == 400


async def test_prices_list_defaults_overrides_and_free_models(ecode_api: Any) -> None:
    prices = (await ecode_api("GET", "billing/prices", user="bob")).body
    models = {row["model"]: row for row in prices["models"]}
    assert models["claude-sonnet-4-5"]["output"] == 15_000_000
    assert models["house-model"]["cache_read"] == 1_000_000
    assert models["llama3"]["free"] and models["offline"]["free"]
    assert prices["micros_per_credit"] == 1_000_000
