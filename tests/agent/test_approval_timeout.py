"""A question nobody answers ends the run after ``c.EcodeApp.approval_timeout_s``, clearly."""

from __future__ import annotations

from typing import Any

import pytest

from ecode_jupyter.testing import text_turn

from .feed import events, of_type, wait_final


@pytest.fixture
def agent_config() -> dict[str, Any]:
    return {"agent_offline_installs": False, "approval_timeout_s": 0.5}


async def test_an_unanswered_approval_fails_the_run(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ecode_anthropic_loopback([text_turn("Plan:\n1. Do it.")])
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    pid = (await ecode_api("POST", "projects", body={"name": "Waiting"})).body["id"]
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "x", "mode": "plan"})
    run = await wait_final(ecode_api, started.body["id"])
    assert (run["status"], run["reason"]) == ("failed", "approval_timeout"), run
    feed = await events(ecode_api, run["id"])
    asked = of_type(feed, "approval.requested")[0]["data"]
    assert [e["data"]["decision"] for e in of_type(feed, "approval.resolved")] == ["expired"]
    final = of_type(feed, "run.failed")[0]["data"]
    assert "nobody answered" in final["message"] and "approval_timeout_s" in final["message"]
    # Too late: the question is closed.
    late = await ecode_api(
        "POST", f"runs/{run['id']}/approvals/{asked['approval_id']}", body={"decision": "allow"}
    )
    assert late.status == 409 and "expired" in late.body["error"]["message"]
