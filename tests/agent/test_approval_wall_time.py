"""Time a run spends waiting for a person does not count against its wall-time limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ecode_jupyter.testing import text_turn, tool_turn

from .feed import events, of_type, wait_final

WALL_S = 3.0


@pytest.fixture
def agent_config() -> dict[str, Any]:
    return {
        "agent_offline_installs": False,
        "agent_max_wall_time_s": WALL_S,
        "approval_timeout_s": 60.0,
    }


async def test_a_slow_answer_does_not_use_up_the_runs_time(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An answer-only run (nothing to verify after) whose one look is asked about.
    server = ecode_anthropic_loopback(
        [tool_turn("list_files", {}), text_turn("The project is empty so far.")]
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    pid = (await ecode_api("POST", "projects", body={"name": "Slow"})).body["id"]
    policy = {"rules": [{"tool": "list_files", "action": "ask"}]}
    assert (await ecode_api("PUT", f"projects/{pid}/policy", body=policy)).status == 200
    started = await ecode_api(
        "POST", f"projects/{pid}/runs", body={"prompt": "what is here?", "mode": "ask"}
    )
    run_id = started.body["id"]
    while not of_type(await events(ecode_api, run_id), "approval.requested"):
        await asyncio.sleep(0.05)
    asked = of_type(await events(ecode_api, run_id), "approval.requested")[0]["data"]
    # The person takes longer than the run's whole time limit to answer.
    await asyncio.sleep(WALL_S + 1.5)
    assert (await ecode_api("GET", f"runs/{run_id}")).body["status"] == "running"
    url = f"runs/{run_id}/approvals/{asked['approval_id']}"
    assert (await ecode_api("POST", url, body={"decision": "allow"})).status == 200
    run = await wait_final(ecode_api, run_id)
    assert run["status"] == "completed", run
