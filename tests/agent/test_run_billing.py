"""Billing of runs: out of credits stops a run before its first model call."""

from __future__ import annotations

from typing import Any

import pytest

from ecode_jupyter.testing import text_turn

from .feed import events, of_type, wait_final


@pytest.fixture
def agent_config() -> dict[str, Any]:
    return {"agent_offline_installs": False, "monthly_allowance": 0.0}


async def test_out_of_credits_fails_the_run_before_any_model_call(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ecode_anthropic_loopback([text_turn("never sent")])
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    pid = (await ecode_api("POST", "projects", body={"name": "p"})).body["id"]
    run = (await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "build"})).body
    final = await wait_final(ecode_api, run["id"])
    assert (final["status"], final["reason"]) == ("failed", "insufficient_credits")
    failed = of_type(await events(ecode_api, run["id"]), "run.failed")[0]["data"]
    assert failed["reason"] == "insufficient_credits"
    assert server.requests == []
