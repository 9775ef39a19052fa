"""Cancelling, restarting, continuing; secrets kept out; cut streams settled and retried."""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.agent.manager import default_runner_id
from ecode_jupyter.db import Database
from ecode_jupyter.db.models import Project, ProjectMember, Run, User, utcnow
from ecode_jupyter.testing import CutStream, ScriptedTurn, text_turn, tool_turn

from .feed import events, of_type, wait_final


def use_anthropic(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)


def process_gone(pid: int) -> bool:
    """True when the process no longer runs (gone, or a zombie nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def host_pid_of(marker: str) -> int:
    """The host pid of the process whose command line contains ``marker``: commands run in a
    PID namespace of their own, so the pid they print (``$!``) is not the host's."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    msg = f"no process with {marker!r} in its command line"
    raise AssertionError(msg)


async def test_cancelling_a_run_kills_its_running_command(
    ecode_api: Any,
    ecode_anthropic_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
    ecode_workspace_root: Path,
) -> None:
    command = "sleep 1000.5151 & echo $! > sleep.pid; wait"
    server = ecode_anthropic_loopback([tool_turn("run_command", {"command": command})])
    use_anthropic(server, monkeypatch)
    pid = (await ecode_api("POST", "projects", body={"name": "p"})).body["id"]
    run = (await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "sleep"})).body
    pid_file = ecode_workspace_root / pid / "sleep.pid"
    while not (pid_file.exists() and pid_file.read_text().strip()):
        await asyncio.sleep(0.02)
    sleeper = host_pid_of("sleep\x001000.5151")
    assert not process_gone(sleeper)

    resp = await ecode_api("POST", f"runs/{run['id']}/cancel")
    assert resp.status == 200 and resp.body["status"] == "cancelled"
    for _ in range(200):
        if process_gone(sleeper):
            break
        await asyncio.sleep(0.02)
    assert process_gone(sleeper)
    feed = await events(ecode_api, run["id"])
    assert feed[-1]["type"] == "run.cancelled"
    assert of_type(feed, "tool.call")[0]["data"]["arguments"]["command"] == command
    # Cancelling again is harmless and changes nothing.
    again = await ecode_api("POST", f"runs/{run['id']}/cancel")
    assert again.body["status"] == "cancelled" and again.body["last_seq"] == feed[-1]["seq"]


@pytest.fixture
def orphaned_runs(ecode_database_url: str, ecode_workspace_root: Path) -> dict[str, str]:
    """Runs a previous server left behind, written before this test's server starts."""
    db = Database(ecode_database_url)
    now = utcnow()
    mine = default_runner_id(getpass.getuser(), str(ecode_workspace_root.resolve()))
    runners = {
        "restarted": {"id": mine, "heartbeat": now.isoformat()},
        "dead": {"id": "other-host:bob:/x", "heartbeat": (now - timedelta(hours=1)).isoformat()},
        "alive": {"id": "other-host:bob:/x", "heartbeat": now.isoformat()},
    }
    ids: dict[str, str] = {}

    def seed(session: Any) -> None:
        session.add(User(username="alice", display_name="Alice"))
        session.flush()
        for name, runner in runners.items():
            project = Project(owner="alice", name=name, slug=name, prompt="a cli script")
            session.add(project)
            session.flush()
            session.add(ProjectMember(project_id=project.id, username="alice", role="owner"))
            (ecode_workspace_root / project.id).mkdir()
            run = Run(
                project_id=project.id,
                created_by="alice",
                prompt="a cli script",
                provider="offline",
                model="offline",
                status="running",
                started_at=now,
                summary={"runner": runner},
            )
            session.add(run)
            session.flush()
            ids[name] = run.id

    db.call(seed)
    db.dispose()
    return ids


async def test_a_restarted_server_marks_its_runs_interrupted_and_they_can_continue(
    orphaned_runs: dict[str, str], ecode_api: Any, jp_serverapp: Any
) -> None:
    # What a server does once its loop runs (pytest-jupyter does not start extensions).
    await jp_serverapp.extension_manager.start_extension("ecode_jupyter")
    for name in ("restarted", "dead"):
        run = (await ecode_api("GET", f"runs/{orphaned_runs[name]}")).body
        assert (run["status"], run["reason"]) == ("interrupted", "server_restart"), name
        feed = await events(ecode_api, run["id"])
        assert [e["type"] for e in feed] == ["run.interrupted"]
    # A run whose server is still alive elsewhere is left alone; cancelling it asks that
    # server (through the database) to stop it.
    alive = (await ecode_api("GET", f"runs/{orphaned_runs['alive']}")).body
    assert alive["status"] == "running"
    asked = (await ecode_api("POST", f"runs/{orphaned_runs['alive']}/cancel")).body
    assert asked["status"] == "running" and asked["summary"]["cancel_requested"] == "alice"

    resp = await ecode_api("POST", f"runs/{orphaned_runs['restarted']}/continue")
    assert resp.status == 201, resp.body
    assert resp.body["continued_from"] == orphaned_runs["restarted"]
    resumed = await wait_final(ecode_api, resp.body["id"])
    assert resumed["status"] == "completed" and resumed["summary"]["tests"]["passed"]


async def test_secret_values_never_reach_the_feed_or_the_model(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "tok-4f9a1c0e77d2"
    server = ecode_anthropic_loopback(
        [
            tool_turn("run_command", {"command": "echo the token is $API_TOKEN; env | sort"}),
            text_turn("Printed it."),
        ]
    )
    use_anthropic(server, monkeypatch)
    pid = (await ecode_api("POST", "projects", body={"name": "p"})).body["id"]
    put = await ecode_api("PUT", f"projects/{pid}/secrets/API_TOKEN", body={"value": secret})
    assert put.status in (200, 201), put.body
    run = (await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "show it"})).body
    await wait_final(ecode_api, run["id"])

    feed = await events(ecode_api, run["id"])
    assert secret not in json.dumps(feed)
    output = "".join(e["data"]["text"] for e in of_type(feed, "command.output"))
    assert "the token is [secret API_TOKEN]" in output
    sent = server.requests[1].tool_results()[0].content
    assert secret not in sent and "[secret API_TOKEN]" in sent
    assert "API_TOKEN" in server.requests[0].json["system"][0]["text"]


async def test_a_cut_stream_is_settled_and_the_turn_retried(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ecode_anthropic_loopback(
        [ScriptedTurn(text="All done, nothing to build here.", faults=[CutStream(3)])]
    )
    use_anthropic(server, monkeypatch)
    body = {"name": "p", "template": "python-script"}
    pid = (await ecode_api("POST", "projects", body=body)).body["id"]
    run = (await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "x"})).body
    final = await wait_final(ecode_api, run["id"])
    assert final["status"] == "completed", final
    usage = of_type(await events(ecode_api, run["id"]), "usage")
    assert [u["data"]["partial"] for u in usage] == [True, False]
    # The cut attempt's input tokens were billed too: the run holds both attempts' input.
    assert final["usage"]["input_tokens"] == sum(u["data"]["input_tokens"] for u in usage)
    assert usage[0]["data"]["input_tokens"] > 0
    assert final["cost_micros"] > 0
    account = await ecode_api("GET", "billing/account")
    assert account.status == 200


async def test_a_server_that_stops_interrupts_its_runs(
    ecode_api: Any,
    ecode_app: Any,
    ecode_anthropic_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
    ecode_workspace_root: Path,
) -> None:
    server = ecode_anthropic_loopback([tool_turn("run_command", {"command": "touch go; sleep 60"})])
    use_anthropic(server, monkeypatch)
    pid = (await ecode_api("POST", "projects", body={"name": "p"})).body["id"]
    run = (await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "wait"})).body
    while not (ecode_workspace_root / pid / "go").exists():
        await asyncio.sleep(0.02)
    await ecode_app.ecode.extras["agent"].stop()
    stopped = (await ecode_api("GET", f"runs/{run['id']}")).body
    assert (stopped["status"], stopped["reason"]) == ("interrupted", "server_stop")
    assert (await events(ecode_api, run["id"]))[-1]["type"] == "run.interrupted"
