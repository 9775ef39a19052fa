"""The price table: shipped defaults, config overrides, free models, exact integer costs."""

from __future__ import annotations

import pytest

from ecode_jupyter.agent.providers.base import Usage
from ecode_jupyter.billing import DEFAULT_PRICES, PriceTable, credits_to_micros, format_credits
from ecode_jupyter.exceptions import InvalidInput


def test_shipped_defaults_price_the_models_the_agent_offers() -> None:
    table = PriceTable()
    for model in (
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-1",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4o",
        "gpt-4o-mini",
        "o4-mini",
    ):
        assert table.is_known(model), model
    sonnet = table.price("claude-sonnet-4-5")
    # $3 in / $15 out per million tokens, one credit per dollar.
    assert (sonnet.input, sonnet.output) == (3_000_000, 15_000_000)
    # A million output tokens of Sonnet cost 15 credits exactly.
    assert sonnet.cost(Usage(0, 1_000_000)) == credits_to_micros(15)
    # Dated snapshots cost what their family costs.
    assert table.price("claude-sonnet-4-5-20250929") == sonnet
    assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")


def test_config_overrides_merge_and_free_models_cost_nothing() -> None:
    table = PriceTable(
        {"gpt-4o": {"output": 1}, "house-model": {"input": 500_000, "output": 700_000}},
        free_models=["llama3"],
    )
    assert table.price("gpt-4o").input == DEFAULT_PRICES["gpt-4o"].input
    assert table.price("gpt-4o").output == 1
    house = table.price("house-model")
    assert (house.cache_write, house.cache_read) == (500_000, 500_000)
    assert table.price("llama3").cost(Usage(10**6, 10**6, 10**6, 10**6)) == 0
    assert table.price("offline").estimate(10**6, 10**6) == 0
    listed = {row["model"]: row for row in table.to_json()["models"]}
    assert listed["llama3"]["free"] and listed["offline"]["free"]
    assert listed["house-model"]["input"] == 500_000


@pytest.mark.parametrize(
    "prices",
    [
        {"m": {"input": -1, "output": 1}},
        {"m": {"input": 1.5, "output": 1}},
        {"m": {"output": 1}},
        {"m": {"input": 1, "output": 1, "typo": 3}},
        {"m": "cheap"},
    ],
)
def test_bad_price_config_is_refused_with_a_clear_message(prices: dict[str, object]) -> None:
    with pytest.raises(InvalidInput, match="model_prices"):
        PriceTable(prices)


def test_a_model_with_no_price_is_refused() -> None:
    with pytest.raises(InvalidInput, match="free_models"):
        PriceTable().price("my-local-llm")


def test_many_cheap_calls_are_never_rounded_to_nothing() -> None:
    mini = PriceTable().price("gpt-4o-mini")  # 0.15 micro-credits per input token
    assert mini.cost(Usage(1, 0)) == 1
    assert mini.cost(Usage(1000, 0)) == 150
    assert mini.cost(Usage(0, 0)) == 0


def test_credits_and_micros_convert_exactly() -> None:
    assert credits_to_micros("1.5") == 1_500_000
    assert credits_to_micros(0.1) == 100_000
    assert format_credits(1_500_000) == "1.500000"
    assert format_credits(-42) == "-0.000042"
    for bad in ("lots", True, "nan"):
        with pytest.raises(InvalidInput):
            credits_to_micros(bad)
