"""Run modes: ``plan`` writes the plan and waits for a person's approval before anything is
written (approving goes on with the same run, denying ends it); ``ask`` answers with the tools
that only look. A bad mode is a 400, and so is a mode the offline provider cannot serve."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from ecode_jupyter.agent.modes import PLAN_APPROVED
from ecode_jupyter.testing import LoopbackRequest, ScriptedTurn, text_turn, tool_turn

from .feed import events, of_type, wait_final

PLAN = "Plan:\n1. Write a test.\n2. Run it."
TEST_FILE = "def test_ok():\n    assert True\n"


@pytest.fixture
def agent_config() -> dict[str, Any]:
    return {
        "agent_offline_installs": False,
        "agent_max_wall_time_s": 120.0,
        "approval_timeout_s": 60.0,
    }


def _turns(request: LoopbackRequest) -> int:
    return sum(1 for m in request.json.get("messages") or [] if m.get("role") == "assistant")


@pytest.fixture
def model(ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    def respond(request: LoopbackRequest) -> ScriptedTurn:
        turns = _turns(request)
        if "read_file" in request.tool_names() and "write_file" not in request.tool_names():
            # ask mode: look, then answer
            if turns == 0:
                return tool_turn("list_files", {})
            return text_turn("The project has one file, README.md.")
        if turns == 0:
            return text_turn(PLAN)
        if turns == 1:
            return tool_turn("write_file", {"path": "tests/test_ok.py", "content": TEST_FILE})
        return text_turn("Done.")

    server = ecode_anthropic_loopback(respond)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    return server


async def _plan_request(ecode_api: Any, run_id: str) -> dict[str, Any]:
    while True:
        asked = of_type(await events(ecode_api, run_id), "approval.requested")
        if asked:
            return dict(asked[0]["data"])
        run = (await ecode_api("GET", f"runs/{run_id}")).body
        assert run["status"] in ("queued", "running"), run
        await asyncio.sleep(0.05)


async def test_plan_mode_waits_for_the_plan_and_approving_builds(
    ecode_api: Any, ecode_workspace_root: Any, model: Any
) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "Planned"})).body["id"]
    started = await ecode_api(
        "POST", f"projects/{pid}/runs", body={"prompt": "a tested thing", "mode": "plan"}
    )
    assert started.status == 201 and started.body["mode"] == "plan", started.body
    run_id = started.body["id"]
    asked = await _plan_request(ecode_api, run_id)
    assert asked["kind"] == "plan" and asked["arguments"]["plan"] == PLAN
    # The plan's turn offered no tools, and nothing was written while it waits.
    assert model.requests[0].tool_names() == []
    assert not (ecode_workspace_root / pid / "tests" / "test_ok.py").exists()
    assert len(model.requests) == 1

    url = f"runs/{run_id}/approvals/{asked['approval_id']}"
    assert (await ecode_api("POST", url, body={"decision": "allow"})).status == 200
    run = await wait_final(ecode_api, run_id)
    assert run["status"] == "completed", run
    # The same run went on: told the plan is approved, with its tools this time.
    assert model.requests[1].json["messages"][-1]["content"][-1]["text"] == PLAN_APPROVED
    assert "write_file" in model.requests[1].tool_names()
    assert (ecode_workspace_root / pid / "tests" / "test_ok.py").exists()
    feed = await events(ecode_api, run_id)
    assert [e["data"]["decision"] for e in of_type(feed, "approval.resolved")] == ["allow"]


async def test_a_denied_plan_ends_the_run_with_nothing_changed(
    ecode_api: Any, ecode_workspace_root: Any, model: Any
) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "Rejected"})).body["id"]
    started = await ecode_api(
        "POST", f"projects/{pid}/runs", body={"prompt": "a tested thing", "mode": "plan"}
    )
    run_id = started.body["id"]
    asked = await _plan_request(ecode_api, run_id)
    url = f"runs/{run_id}/approvals/{asked['approval_id']}"
    assert (await ecode_api("POST", url, body={"decision": "deny"})).status == 200
    run = await wait_final(ecode_api, run_id)
    assert (run["status"], run["reason"]) == ("failed", "plan_rejected")
    assert len(model.requests) == 1
    assert not (ecode_workspace_root / pid / "tests").exists()


async def test_ask_mode_answers_with_read_only_tools(ecode_api: Any, model: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "Asked"})).body["id"]
    started = await ecode_api(
        "POST", f"projects/{pid}/runs", body={"prompt": "what is in here?", "mode": "ask"}
    )
    assert started.status == 201 and started.body["mode"] == "ask"
    run = await wait_final(ecode_api, started.body["id"])
    assert run["status"] == "completed", run
    offered = set(model.requests[0].tool_names())
    assert "read_file" in offered and "list_files" in offered
    assert not offered & {"write_file", "edit_file", "delete_file", "run_command", "execute_code"}
    feed = await events(ecode_api, run["id"])
    # Nothing to verify: nothing changed.
    assert not of_type(feed, "verify.result")
    assert of_type(feed, "run.completed")[0]["data"]["message"] == "answered; nothing was changed"
    assert "README.md" in run["summary"]["message"]


async def test_a_bad_mode_is_refused(ecode_api: Any, model: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "Modes"})).body["id"]
    for mode in ("yolo", 3, ""):
        resp = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "x", "mode": mode})
        assert resp.status == 400 and "mode" in resp.body["error"]["message"], resp.body
    made = await ecode_api("POST", "projects", body={"name": "M2", "prompt": "x", "mode": "later"})
    assert made.status == 400 and "mode" in made.body["error"]["message"]
    # Nothing was created or started by the refused requests.
    names = [p["name"] for p in (await ecode_api("GET", "projects")).body["projects"]]
    assert "M2" not in names
    assert (await ecode_api("GET", f"projects/{pid}/runs")).body["runs"] == []


async def test_plan_and_ask_need_a_model(ecode_api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # No key: the offline provider, which only builds templates.
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    pid = (await ecode_api("POST", "projects", body={"name": "Offline"})).body["id"]
    for mode in ("plan", "ask"):
        resp = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "x", "mode": mode})
        assert resp.status == 400 and "needs a model" in resp.body["error"]["message"]


async def test_a_plan_approved_as_edited_is_the_one_carried_out(ecode_api: Any, model: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "Edited"})).body["id"]
    started = await ecode_api(
        "POST", f"projects/{pid}/runs", body={"prompt": "a tested thing", "mode": "plan"}
    )
    run_id = started.body["id"]
    asked = await _plan_request(ecode_api, run_id)
    url = f"runs/{run_id}/approvals/{asked['approval_id']}"
    edited = "1. Write a test.\n2. Keep it to one assert."
    # An edited plan goes with an approval, and is text.
    for body in ({"decision": "deny", "plan": edited}, {"decision": "allow", "plan": ""}):
        bad = await ecode_api("POST", url, body=body)
        assert bad.status == 400 and bad.body["error"]["details"]["field"] == "plan", bad.body
    ok = await ecode_api("POST", url, body={"decision": "allow", "plan": edited})
    assert ok.status == 200 and ok.body["arguments"]["edited_plan"] == edited
    run = await wait_final(ecode_api, run_id)
    assert run["status"] == "completed", run
    told = model.requests[1].json["messages"][-1]["content"][-1]["text"]
    assert "as the user edited it" in told and edited in told
    feed = await events(ecode_api, run_id)
    plans = of_type(feed, "plan")
    assert [p["data"]["text"] for p in plans] == [PLAN, edited]
    assert plans[1]["data"]["steps"] == ["Write a test.", "Keep it to one assert."]
    assert plans[1]["data"]["edited_by"] == "alice"
    assert of_type(feed, "approval.resolved")[0]["data"]["edited"] is True


async def test_percent_ecode_mode_plan_stops_following_at_the_plan_and_approve_goes_on(
    ecode_api: Any, model: Any, jp_http_port: int, jp_base_url: str, tmp_path: Any
) -> None:
    from jupyter_client.manager import AsyncKernelManager
    from magics.kernel import CellOutput, kernel_env

    from ecode_jupyter.pytest_plugin import ecode_token_for

    env = kernel_env(
        ECODE_SERVER_URL=f"http://127.0.0.1:{jp_http_port}{jp_base_url}",
        ECODE_TOKEN=ecode_token_for("alice"),
    )
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()

    async def cell(code: str) -> CellOutput:
        out = CellOutput()
        reply = await kc.execute_interactive(code, output_hook=out.hook, timeout=120)
        out.status = reply["content"]["status"]
        assert out.status == "ok", out.everything()
        return out

    try:
        await kc.wait_for_ready(timeout=60)
        await cell("%load_ext ecode_jupyter")
        # The cell returns at the plan instead of holding the kernel, saying how to answer.
        planned = await cell("%ecode --mode plan a tested thing")
        waiting = re.search(r"%ecode approve (\w+) (\w+)", planned.everything())
        assert waiting and "the run waits for your approval" in planned.everything()
        run_id = waiting[1]
        assert (await ecode_api("GET", f"runs/{run_id}")).body["status"] == "running"
        approved = await cell(f"%ecode approve {waiting[2]}")
        assert f"ecode: allowed: plan (run {run_id})" in approved.stdout
        await cell("%ecode watch")
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    run = await wait_final(ecode_api, run_id)
    assert (run["status"], run["mode"]) == ("completed", "plan"), run


async def test_continuing_a_plan_first_run_plans_again(ecode_api: Any, model: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "Again"})).body["id"]
    started = await ecode_api(
        "POST", f"projects/{pid}/runs", body={"prompt": "a tested thing", "mode": "plan"}
    )
    first = started.body["id"]
    asked = await _plan_request(ecode_api, first)
    url = f"runs/{first}/approvals/{asked['approval_id']}"
    assert (await ecode_api("POST", url, body={"decision": "deny"})).status == 200
    assert (await wait_final(ecode_api, first))["reason"] == "plan_rejected"
    again = await ecode_api("POST", f"runs/{first}/continue")
    assert again.status == 201 and again.body["mode"] == "plan", again.body
    # Nothing is written before a person approves the continuation's plan either.
    asked = await _plan_request(ecode_api, again.body["id"])
    assert asked["kind"] == "plan"
    assert model.requests[-1].tool_names() == []
    assert "Plan first" in str(model.requests[-1].json["messages"][0])
    await ecode_api("POST", f"runs/{again.body['id']}/cancel")
