"""Approvals: a run under a policy that asks about ``run_command`` stops with an
``approval.requested`` event; a person's allow lets the call run, deny makes the model's next
turn see the refusal, always adds an allow rule. Answers are audited with who gave them, and
only editors and owners may give them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ecode_jupyter.cli import main
from ecode_jupyter.pytest_plugin import ecode_token_for
from ecode_jupyter.testing import LoopbackRequest, ScriptedTurn, text_turn, tool_turn

from .feed import events, of_type, wait_final

TEST_FILE = "def test_ok():\n    assert True\n"
ASK_CURL = {"rules": [{"tool": "run_command", "match": "curl *|wget *", "action": "ask"}]}
FETCH = "curl --version"
OTHER_ROUTE = "python -c \"print('took another route')\""


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
    """Writes a passing test, fetches with curl; refused, it takes another route."""

    def respond(request: LoopbackRequest) -> ScriptedTurn:
        turns = _turns(request)
        if turns == 0:
            return tool_turn("write_file", {"path": "tests/test_ok.py", "content": TEST_FILE})
        if turns == 1:
            return tool_turn("run_command", {"command": FETCH}, text="Fetching the data.")
        results = request.tool_results()
        if turns == 2 and results and results[0].is_error:
            return tool_turn("run_command", {"command": OTHER_ROUTE})
        return text_turn("Done.")

    server = ecode_anthropic_loopback(respond)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    return server


async def _project_with_policy(ecode_api: Any, policy: dict[str, Any]) -> str:
    pid = str((await ecode_api("POST", "projects", body={"name": "Guarded"})).body["id"])
    put = await ecode_api("PUT", f"projects/{pid}/policy", body=policy)
    assert put.status == 200, put.body
    return pid


def _results_of(feed: list[dict[str, Any]], tool: str) -> list[dict[str, Any]]:
    return [e["data"] for e in of_type(feed, "tool.result") if e["data"]["name"] == tool]


async def _wait_for_request(ecode_api: Any, run_id: str) -> dict[str, Any]:
    """The run's pending approval.requested event (pytest-timeout bounds the wait)."""
    while True:
        feed = await events(ecode_api, run_id)
        asked = of_type(feed, "approval.requested")
        if asked:
            return dict(asked[-1]["data"])
        final = [e for e in feed if e["type"].startswith("run.") and e["type"] != "run.started"]
        assert not final, final
        await asyncio.sleep(0.05)


async def test_an_asked_call_waits_and_allow_lets_it_run(ecode_api: Any, model: Any) -> None:
    pid = await _project_with_policy(ecode_api, ASK_CURL)
    await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "viewer"})
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "fetch it"})
    run_id = started.body["id"]
    asked = await _wait_for_request(ecode_api, run_id)
    # The feed shows the exact call, and nothing ran yet: no result for it, the model waits.
    assert asked["kind"] == "tool" and asked["tool"] == "run_command"
    assert asked["arguments"]["command"] == FETCH and "project" not in asked["arguments"]
    assert FETCH in asked["message"]
    feed = await events(ecode_api, run_id)
    assert not _results_of(feed, "run_command")
    assert (await ecode_api("GET", f"runs/{run_id}")).body["status"] == "running"
    assert len(model.requests) == 2

    # Whoever may read the feed may list what waits (a client that reconnects asks here).
    listed = await ecode_api("GET", f"runs/{run_id}/approvals", user="bob")
    assert [(a["id"], a["status"]) for a in listed.body["approvals"]] == [
        (asked["approval_id"], "pending")
    ]
    assert (await ecode_api("GET", f"runs/{run_id}/approvals", user="carol")).status == 404
    url = f"runs/{run_id}/approvals/{asked['approval_id']}"
    # A viewer may watch but not decide; a stranger does not learn the run exists.
    viewer = await ecode_api("POST", url, user="bob", body={"decision": "allow"})
    assert viewer.status == 403, viewer.body
    stranger = await ecode_api("POST", url, user="carol", body={"decision": "allow"})
    assert stranger.status == 404, stranger.body
    bad = await ecode_api("POST", url, body={"decision": "maybe"})
    assert bad.status == 400 and "decision" in bad.body["error"]["message"]
    # Only a plan's approval takes an edited plan.
    planned = await ecode_api("POST", url, body={"decision": "allow", "plan": "1. x"})
    assert planned.status == 400 and "plan" in planned.body["error"]["message"]

    allowed = await ecode_api("POST", url, body={"decision": "allow"})
    assert allowed.status == 200, allowed.body
    assert allowed.body["status"] == "allowed" and allowed.body["decided_by"] == "alice"
    again = await ecode_api("POST", url, body={"decision": "deny"})
    assert again.status == 409

    run = await wait_final(ecode_api, run_id)
    assert run["status"] == "completed", run
    feed = await events(ecode_api, run_id)
    resolved = of_type(feed, "approval.resolved")
    assert [(e["data"]["decision"], e["data"]["by"]) for e in resolved] == [("allow", "alice")]
    fetched = _results_of(feed, "run_command")
    assert fetched[0]["ok"] and "curl" in fetched[0]["output"]
    # The model got the command's output, not a refusal.
    assert not model.requests[2].tool_results()[0].is_error

    audit = await ecode_api("GET", f"audit?project={pid}&action=approval.decide", user="admin")
    assert audit.status == 200, audit.body
    entries = audit.body["events"]
    assert [(e["actor"], e["details"]["decision"]) for e in entries] == [("alice", "allow")]
    assert FETCH in entries[0]["details"]["call"]


async def test_deny_makes_the_model_take_another_route(ecode_api: Any, model: Any) -> None:
    pid = await _project_with_policy(ecode_api, ASK_CURL)
    await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "editor"})
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "fetch it"})
    run_id = started.body["id"]
    asked = await _wait_for_request(ecode_api, run_id)
    # An editor may decide.
    url = f"runs/{run_id}/approvals/{asked['approval_id']}"
    denied = await ecode_api("POST", url, user="bob", body={"decision": "deny"})
    assert denied.status == 200 and denied.body["status"] == "denied"

    run = await wait_final(ecode_api, run_id)
    assert run["status"] == "completed", run
    # The model's next turn saw the refusal as the call's error result, and went another way.
    refused = model.requests[2].tool_results()[0]
    assert refused.is_error and refused.content.startswith("policy_denied: a person denied")
    feed = await events(ecode_api, run_id)
    commands = _results_of(feed, "run_command")
    assert not commands[0]["ok"] and "policy_denied" in commands[0]["output"]
    assert "took another route" in commands[1]["output"]
    assert [e["data"]["decision"] for e in of_type(feed, "approval.resolved")] == ["deny"]
    audit = await ecode_api("GET", f"audit?project={pid}&action=approval.decide", user="admin")
    assert [(e["actor"], e["details"]["decision"]) for e in audit.body["events"]] == [
        ("bob", "deny")
    ]


async def test_always_allow_adds_a_rule_that_lets_the_next_call_run(
    ecode_api: Any, model: Any
) -> None:
    pid = await _project_with_policy(ecode_api, ASK_CURL)
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "fetch it"})
    run_id = started.body["id"]
    asked = await _wait_for_request(ecode_api, run_id)
    url = f"runs/{run_id}/approvals/{asked['approval_id']}"
    assert (await ecode_api("POST", url, body={"decision": "always"})).status == 200
    assert (await wait_final(ecode_api, run_id))["status"] == "completed"
    policy = (await ecode_api("GET", f"projects/{pid}/policy")).body
    assert policy["rules"][0] == {"tool": "run_command", "match": FETCH, "action": "allow"}
    assert policy["rules"][1] == ASK_CURL["rules"][0]
    # The same call in a second run is not asked about again.
    second = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "again"})
    final = await wait_final(ecode_api, second.body["id"])
    assert final["status"] == "completed", final
    assert not of_type(await events(ecode_api, second.body["id"]), "approval.requested")


async def test_policy_bodies_are_validated_and_roles_enforced(ecode_api: Any) -> None:
    pid = str((await ecode_api("POST", "projects", body={"name": "Rules"})).body["id"])
    empty = await ecode_api("GET", f"projects/{pid}/policy")
    assert empty.status == 200 and empty.body["rules"] == []
    bad_bodies = [
        [],
        {"rule": []},
        {"rules": "deny everything"},
        {"rules": [{"tool": "run_command", "action": "maybe"}]},
        {"rules": [{"tool": "", "action": "deny"}]},
        {"rules": [{"tool": "run command", "action": "deny"}]},
        {"rules": [{"tool": "run_command", "match": "", "action": "ask"}]},
        {"rules": [{"tool": "run_command", "match": 3, "action": "ask"}]},
        {"rules": [{"tool": "run_command", "action": "ask", "when": "always"}]},
        {"rules": [{"tool": "x", "action": "deny"}] * 201},
    ]
    for body in bad_bodies:
        resp = await ecode_api("PUT", f"projects/{pid}/policy", body=body)
        assert resp.status == 400, (body, resp.body)
        assert resp.body["error"]["code"] == "invalid_input"
    rules = {
        "rules": [
            {"tool": "install_packages", "action": "ask"},
            {"tool": "write_*", "match": "secrets/*", "action": "deny"},
        ]
    }
    put = await ecode_api("PUT", f"projects/{pid}/policy", body=rules)
    assert put.status == 200 and put.body["rules"] == rules["rules"]
    assert put.body["updated_by"] == "alice"

    await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "editor"})
    await ecode_api("PUT", f"projects/{pid}/members/carol", body={"role": "viewer"})
    # Editors read the policy but only the owner changes it; viewers and strangers neither.
    assert (await ecode_api("GET", f"projects/{pid}/policy", user="bob")).body == put.body
    assert (await ecode_api("PUT", f"projects/{pid}/policy", user="bob", body=rules)).status == 403
    assert (await ecode_api("GET", f"projects/{pid}/policy", user="carol")).status == 403
    assert (await ecode_api("GET", f"projects/{pid}/policy", user="dave")).status == 404
    assert (await ecode_api("PUT", f"projects/{pid}/policy", user="dave", body=rules)).status == 404
    audit = await ecode_api("GET", f"audit?project={pid}&action=policy.update", user="admin")
    assert [e["details"]["rules"] for e in audit.body["events"]] == [rules["rules"]]


async def test_the_cli_answers_an_approval_through_the_server(
    ecode_api: Any,
    model: Any,
    jp_http_port: int,
    jp_base_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pid = await _project_with_policy(ecode_api, ASK_CURL)
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "fetch it"})
    run_id = started.body["id"]
    asked = await _wait_for_request(ecode_api, run_id)
    monkeypatch.setenv("ECODE_TOKEN", ecode_token_for("alice"))
    server = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    argv = ["--server", server, "--json", "approve", run_id, asked["approval_id"], "--deny"]
    # main() runs its own event loop: off this test's loop, as from a terminal.
    assert await asyncio.to_thread(main, argv) == 0
    answered = json.loads(capsys.readouterr().out)
    assert (answered["status"], answered["decided_by"]) == ("denied", "alice")
    assert (await wait_final(ecode_api, run_id))["status"] == "completed"
    assert model.requests[2].tool_results()[0].is_error
    # Answered already: the CLI says so and exits non-zero.
    assert await asyncio.to_thread(main, argv) == 1
    assert "denied already" in capsys.readouterr().out


async def test_percent_ecode_approve_answers_from_a_notebook(
    ecode_api: Any, model: Any, jp_http_port: int, jp_base_url: str, tmp_path: Any
) -> None:
    from jupyter_client.manager import AsyncKernelManager
    from magics.kernel import CellOutput, kernel_env

    pid = await _project_with_policy(ecode_api, ASK_CURL)
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "fetch it"})
    run_id = started.body["id"]
    asked = await _wait_for_request(ecode_api, run_id)
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
        return out

    try:
        await kc.wait_for_ready(timeout=60)
        assert (await cell("%load_ext ecode_jupyter")).status == "ok"
        answered = await cell(f"%ecode approve {run_id} {asked['approval_id']} deny")
        assert answered.status == "ok", answered.everything()
        assert f"ecode: denied: run_command (run {run_id})" in answered.stdout
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    assert (await wait_final(ecode_api, run_id))["status"] == "completed"
    assert model.requests[2].tool_results()[0].content.startswith("policy_denied:")


def test_jupyter_ecode_new_says_what_waits_and_how_to_answer() -> None:
    from io import StringIO

    from rich.console import Console

    from ecode_jupyter.cli.progress import FeedPrinter

    out = StringIO()
    printer = FeedPrinter(Console(file=out, width=200, color_system=None))
    asked = {"approval_id": "a1", "tool": "run_command", "message": "run_command `curl x`"}
    printer.handle({"run_id": "r1", "type": "approval.requested", "data": asked})
    assert printer.status == "waiting for approval"
    printer.handle(
        {"run_id": "r1", "type": "approval.resolved", "data": {"decision": "deny", "by": "ann"}}
    )
    text = out.getvalue()
    assert "waiting for approval: run_command `curl x`" in text
    assert "jupyter ecode approve r1 a1" in text and "approval: deny by ann" in text
    assert printer.status == "running"


async def test_an_answer_from_another_process_reaches_the_waiting_run(
    ecode_api: Any,
    model: Any,
    ecode_database_url: str,
    ecode_workspace_root: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `jupyter ecode approve` on the database: its own AgentManager, not the server's, so the
    # waiting run learns of the answer only by reading the row (as from another process).
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("ECODE_WORKSPACE_ROOT", str(ecode_workspace_root))
    pid = await _project_with_policy(ecode_api, ASK_CURL)
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "fetch it"})
    run_id = started.body["id"]
    asked = await _wait_for_request(ecode_api, run_id)
    argv = [
        "--database-url",
        ecode_database_url,
        "--user",
        "alice",
        "--json",
        "approve",
        run_id,
        asked["approval_id"],
    ]
    assert await asyncio.to_thread(main, argv) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "allowed"
    assert (await wait_final(ecode_api, run_id))["status"] == "completed"
    assert not model.requests[2].tool_results()[0].is_error
    resolved = of_type(await events(ecode_api, run_id), "approval.resolved")
    assert [(e["data"]["decision"], e["data"]["by"]) for e in resolved] == [("allow", "alice")]
