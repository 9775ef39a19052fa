"""A question nobody answers ends the run after ``c.EcodeApp.approval_timeout_s``, clearly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ecode_jupyter.db.models import Run
from ecode_jupyter.identity import EcodeUser
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


async def test_a_question_of_a_run_that_ended_elsewhere_takes_no_answer(
    ecode_api: Any,
    ecode_app: Any,
    ecode_anthropic_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A long wait this time: the run is still waiting when its row says it ended, as when
    # the server running it stopped and another marked it interrupted.
    ecode_app.ecode.extras["agent"].approvals.timeout_s = 60.0
    server = ecode_anthropic_loopback([text_turn("Plan:\n1. Do it.")])
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    pid = (await ecode_api("POST", "projects", body={"name": "Orphan"})).body["id"]
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "x", "mode": "plan"})
    run_id = started.body["id"]
    while not of_type(await events(ecode_api, run_id), "approval.requested"):
        await asyncio.sleep(0.05)
    asked = of_type(await events(ecode_api, run_id), "approval.requested")[0]["data"]

    def interrupt(session: Any) -> None:
        session.get(Run, run_id).status = "interrupted"

    await ecode_app.ecode.db.run(interrupt)
    late = await ecode_api(
        "POST", f"runs/{run_id}/approvals/{asked['approval_id']}", body={"decision": "allow"}
    )
    assert late.status == 409 and "cancelled" in late.body["error"]["message"], late.body
    await ecode_app.ecode.extras["agent"].cancel_run(EcodeUser("alice", "alice", False), run_id)
