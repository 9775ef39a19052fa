"""Runs over REST: starting (also from a new project's prompt), rights, conflicts, credits."""

from __future__ import annotations

import asyncio
import importlib.metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from ecode_jupyter.agent.events import SCHEMA_ID
from ecode_jupyter.projects.templating import get_template, list_templates
from ecode_jupyter.testing import text_turn, tool_turn

from .feed import events, of_type, wait_final


async def test_a_new_project_with_a_prompt_is_built_at_once_offline(
    ecode_api: Any, ecode_workspace_root: Path
) -> None:
    resp = await ecode_api(
        "POST", "projects", body={"name": "Todo", "prompt": "a Flask todo API with tests"}
    )
    assert resp.status == 201, resp.body
    started = resp.body["run"]
    assert started["status"] in ("queued", "running")
    assert (started["provider"], started["model"]) == ("offline", "offline")

    run = await wait_final(ecode_api, started["id"])
    assert run["status"] == "completed", run
    assert run["cost_micros"] == 0 and run["usage"]["output_tokens"] == 0
    assert run["summary"]["tests"]["passed"] is True
    workspace = ecode_workspace_root / resp.body["id"]
    assert (workspace / "app.py").is_file() and (workspace / "tests" / "test_app.py").is_file()

    feed = await events(ecode_api, run["id"])
    assert [e["seq"] for e in feed] == list(range(1, len(feed) + 1))
    assert feed[0]["type"] == "run.started" and feed[-1]["type"] == "run.completed"
    plan = of_type(feed, "plan")[0]["data"]
    # Plainly not AI, and how to get AI.
    assert plan["ai"] is False
    assert "no AI is used" in plan["text"] and "ANTHROPIC_API_KEY" in plan["text"]
    assert "OPENAI_BASE_URL" in plan["text"] and "'flask-api'" in plan["text"]
    written = {
        e["data"]["arguments"]["path"]
        for e in of_type(feed, "tool.call")
        if e["data"]["name"] == "write_file"
    }
    assert written == set(run["summary"]["files"]) >= {"app.py", "tests/test_app.py"}
    assert {e["data"]["path"] for e in of_type(feed, "file.changed")} == written
    # The verify step ran the template's tests through run_command, output streamed.
    verify = [e for e in of_type(feed, "tool.call") if e["data"]["call_id"].startswith("verify")]
    assert verify[0]["data"]["arguments"]["command"] == "python -m pytest -q"
    assert "passed" in "".join(e["data"]["text"] for e in of_type(feed, "command.output"))
    usage = of_type(feed, "usage")
    assert usage and all(e["data"]["input_tokens"] == 0 for e in usage)
    # A served template is started once its tests pass.
    assert "start_preview" in [e["data"]["name"] for e in of_type(feed, "tool.call")]
    assert run["summary"]["preview"]["status"] == "running"


async def test_a_follow_up_prompt_the_offline_provider_cannot_do_fails_saying_so(
    ecode_api: Any, ecode_workspace_root: Path
) -> None:
    resp = await ecode_api(
        "POST", "projects", body={"name": "Todo", "prompt": "a Flask todo API with tests"}
    )
    pid = resp.body["id"]
    first = await wait_final(ecode_api, resp.body["run"]["id"])
    assert first["status"] == "completed", first
    # Each model turn names the plan item it works on: write, write, check the requirements.
    steps = [e["data"] for e in of_type(await events(ecode_api, first["id"]), "step.started")]
    assert [s.get("plan_item") for s in steps if s["kind"] == "model"][:3] == [0, 0, 1]
    app = (ecode_workspace_root / pid / "app.py").read_text()

    asked = await ecode_api(
        "POST", f"projects/{pid}/runs", body={"prompt": "add a delete-all endpoint"}
    )
    assert asked.status == 201, asked.body
    run = await wait_final(ecode_api, asked.body["id"])
    # Not a green "completed" with nothing done: failed, saying why and that nothing changed.
    assert (run["status"], run["reason"]) == ("failed", "offline_cannot_change"), run
    feed = await events(ecode_api, run["id"])
    message = of_type(feed, "run.failed")[0]["data"]["message"]
    assert "cannot change" in message and "Nothing was changed" in message
    for kind in ("tool.call", "file.changed", "verify.result", "plan"):
        assert of_type(feed, kind) == [], kind
    assert (ecode_workspace_root / pid / "app.py").read_text() == app
    # "Continue run" on the refusal is refused the same way, not a rebuild that "completes".
    resumed = await ecode_api("POST", f"runs/{run['id']}/continue")
    assert resumed.status in (200, 201), resumed.body
    again = await wait_final(ecode_api, resumed.body["id"])
    assert (again["status"], again["reason"]) == ("failed", "offline_cannot_change"), again


def installed(requirement: str) -> bool:
    name = Requirement(requirement).name
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# The Node templates need npm install (off here): test_node_templates_run.py builds them.
PYTHON_TEMPLATES = [t.id for t in list_templates() if "package.json" not in t.file_paths()]


@pytest.mark.parametrize("template", PYTHON_TEMPLATES)
async def test_the_offline_provider_builds_every_template(ecode_api: Any, template: str) -> None:
    naming_word = get_template(template).names[0]
    resp = await ecode_api(
        "POST", "projects", body={"name": template, "prompt": f"a {naming_word} project"}
    )
    assert resp.status == 201, resp.body
    run = await wait_final(ecode_api, resp.body["run"]["id"])
    assert run["summary"]["tests"]["passed"] is True, run["summary"]
    assert run["summary"]["tests"]["exit_code"] == 0
    missing = [r for r in get_template(template).requirements if not installed(r)]
    if missing and get_template(template).run is not None:
        # Installs are off in tests: an app whose framework is missing cannot start, and the
        # run says so rather than claiming success.
        assert (run["status"], run["reason"]) == ("failed", "preview_failed"), run
    else:
        assert run["status"] == "completed", run
    plan = of_type(await events(ecode_api, run["id"]), "plan")[0]["data"]["text"]
    assert f"template {template!r}" in plan


async def test_a_second_run_while_one_is_active_is_a_conflict(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ecode_anthropic_loopback(
        [tool_turn("run_command", {"command": "sleep 30"}), text_turn("done")]
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    project = (await ecode_api("POST", "projects", body={"name": "p"})).body
    first = await ecode_api("POST", f"projects/{project['id']}/runs", body={"prompt": "wait"})
    assert first.status == 201
    second = await ecode_api("POST", f"projects/{project['id']}/runs", body={"prompt": "again"})
    assert second.status == 409 and second.error_code == "conflict"
    assert first.body["id"] in second.body["error"]["message"]
    cancelled = await ecode_api("POST", f"runs/{first.body['id']}/cancel")
    assert cancelled.body["status"] == "cancelled"
    listed = await ecode_api("GET", f"projects/{project['id']}/runs")
    assert [r["id"] for r in listed.body["runs"]] == [first.body["id"]]


async def test_runs_follow_project_roles(ecode_api: Any) -> None:
    project = (await ecode_api("POST", "projects", body={"name": "shared"})).body
    pid = project["id"]
    put = await ecode_api("PUT", f"projects/{pid}/members/carol", body={"role": "viewer"})
    assert put.status in (200, 201), put.body
    run = (await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "a cli script"})).body
    await wait_final(ecode_api, run["id"])

    # A stranger learns nothing, not even that the run exists.
    for method, path in (
        ("GET", f"runs/{run['id']}"),
        ("GET", f"runs/{run['id']}/events"),
        ("POST", f"runs/{run['id']}/cancel"),
        ("GET", f"projects/{pid}/runs"),
        ("POST", f"projects/{pid}/runs"),
    ):
        resp = await ecode_api(
            method, path, user="bob", body={"prompt": "x"} if method == "POST" else None
        )
        assert resp.status == 404, (method, path, resp.body)
    # A viewer reads runs and the feed but may not start, cancel or continue one.
    assert (await ecode_api("GET", f"runs/{run['id']}", user="carol")).status == 200
    assert len(await events(ecode_api, run["id"], user="carol")) > 3
    for path, body in (
        (f"projects/{pid}/runs", {"prompt": "x"}),
        (f"runs/{run['id']}/cancel", None),
        (f"runs/{run['id']}/continue", None),
    ):
        resp = await ecode_api("POST", path, user="carol", body=body)
        assert resp.status == 403, (path, resp.body)
    assert (await ecode_api("GET", f"runs/{run['id']}", user=None)).status == 401


async def test_bad_requests_get_clear_errors(ecode_api: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "p"})).body["id"]
    cases = [
        ({}, "prompt is required"),
        ({"prompt": "x", "colour": "red"}, "unknown fields"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "model": "no spaces allowed"}, "model"),
        ({"prompt": "x", "model": "nosuch:model"}, "model"),
    ]
    for body, words in cases[:4]:
        resp = await ecode_api("POST", f"projects/{pid}/runs", body=body)
        assert resp.status == 400 and words in resp.body["error"]["message"], (body, resp.body)
    missing = await ecode_api("GET", "runs/0123456789abcdef0123456789abcdef")
    assert missing.status == 404 and missing.error_code == "not_found"
    bad_after = await ecode_api("GET", "runs/0123456789abcdef0123456789abcdef/events?after=x")
    assert bad_after.status in (400, 404)


async def test_a_completed_run_cannot_be_continued(ecode_api: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "p"})).body["id"]
    run = (await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "a cli script"})).body
    await wait_final(ecode_api, run["id"])
    resp = await ecode_api("POST", f"runs/{run['id']}/continue")
    assert resp.status == 409 and "completed" in resp.body["error"]["message"]


async def test_run_events_are_emitted_on_the_jupyter_event_bus(
    ecode_api: Any, jp_serverapp: Any
) -> None:
    seen: list[dict[str, Any]] = []

    async def listener(*, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        seen.append(data)

    jp_serverapp.event_logger.add_listener(schema_id=SCHEMA_ID, listener=listener)
    pid = (await ecode_api("POST", "projects", body={"name": "p"})).body["id"]
    run = (await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "a cli script"})).body
    await wait_final(ecode_api, run["id"])
    feed = await events(ecode_api, run["id"])
    for _ in range(500):  # listeners run as tasks after each emit
        if len(seen) >= len(feed):
            break
        await asyncio.sleep(0.01)
    assert [(e["seq"], e["type"]) for e in seen] == [(e["seq"], e["type"]) for e in feed]
    assert {e["project_id"] for e in seen} == {pid}


async def test_deleting_a_project_cancels_its_active_run(ecode_api: Any) -> None:
    made = await ecode_api(
        "POST", "projects", body={"name": "busy", "prompt": "a Flask todo API with tests"}
    )
    assert made.status == 201, made.body
    run_id = made.body["run"]["id"]
    assert (await ecode_api("DELETE", f"projects/{made.body['id']}")).status == 200
    # The run ended (cancelled, or completed if it was faster than the delete).
    run = await ecode_api("GET", f"runs/{run_id}")
    assert run.status == 404 or run.body["status"] in ("cancelled", "completed")
