"""Holds cover the worst a model call can cost: many runs against a small budget spend at
most the budget, and every call they made is charged in full (nothing given away)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ecode_jupyter.testing import LoopbackRequest, ScriptedTurn, tool_turn

from .feed import wait_final

RUNS = 12


@pytest.fixture
def agent_config() -> dict[str, Any]:
    return {
        "agent_offline_installs": False,
        "monthly_allowance": 1.0,  # the whole budget: 1 credit
        "agent_max_concurrent_runs": RUNS,
        "agent_max_output_tokens": 256,
        "agent_max_wall_time_s": 300.0,
    }


def _dense_prompt(chars: int) -> str:
    # CJK text: about one token per character with real tokenizers, where characters / 4
    # (the old hold) counts a quarter of them.
    return "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(chars))


async def test_concurrent_runs_against_a_small_budget_leave_nothing_uncharged(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def respond(request: LoopbackRequest) -> ScriptedTurn:
        # Every answer asks for one more look around: runs go on until the credits end.
        return tool_turn("list_files", {"path": "."})

    # The model's tokenizer counts 2 bytes of the input's JSON per token.
    server = ecode_anthropic_loopback(respond, bytes_per_token=2)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    prompt = _dense_prompt(19_000)
    projects = [
        (await ecode_api("POST", "projects", body={"name": f"p{n}"})).body["id"]
        for n in range(RUNS)
    ]
    started = await asyncio.gather(
        *(ecode_api("POST", f"projects/{pid}/runs", body={"prompt": prompt}) for pid in projects)
    )
    finals = await asyncio.gather(*(wait_final(ecode_api, r.body["id"]) for r in started))
    # Every run went on until no hold fitted what was left.
    assert {(f["status"], f["reason"]) for f in finals} == {("failed", "insufficient_credits")}

    usage = (await ecode_api("GET", "billing/usage?group=run")).body
    total = usage["total"]
    assert total["calls"] == len(server.requests) > 0
    assert total["uncharged_micros"] == 0
    assert 0 < total["cost_micros"] <= 1_000_000
    # Each call is charged what its usage costs: the input the model counted, in full.
    assert total["input_tokens"] == sum(r.input_tokens or 0 for r in server.requests)
    account = (await ecode_api("GET", "billing/account")).body
    assert account["open_reservations"] == 0 and account["reserved_micros"] == 0
    assert account["balance_micros"] == 1_000_000 - total["cost_micros"]
    # When the bound did not fit what was left, the provider's own count was asked.
    assert server.side_requests.get("/v1/messages/count_tokens", 0) > 0
