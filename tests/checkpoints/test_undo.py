"""Undo a run, restore to a step, who may, and what unchanged steps cost (issue 19)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from agent.feed import events, wait_final
from agent.scripts import use_loopback

from ecode_jupyter.cli import main
from ecode_jupyter.pytest_plugin import ecode_token_for
from ecode_jupyter.testing import ScriptedToolCall, ScriptedTurn, text_turn, tool_turn

from .conftest import RunScript

README_LINE = "A small command-line tool that summarises text"
MAKE_FILE = "python -c \"open('made.txt', 'w').write('made by a command')\""


def five_file_run() -> list[ScriptedTurn]:
    """Step 1 writes two new files and edits README.md; step 2 edits main.py and a command
    makes made.txt; then done."""
    return [
        ScriptedTurn(
            text="Plan: notes, config, README.",
            tool_calls=[
                ScriptedToolCall("write_file", {"path": "notes.md", "content": "# Notes\n"}),
                ScriptedToolCall("write_file", {"path": "conf/app.toml", "content": "x = 1\n"}),
                ScriptedToolCall(
                    "edit_file",
                    {
                        "path": "README.md",
                        "old_text": README_LINE,
                        "new_text": "An AGENT-EDITED tool that summarises text",
                    },
                ),
            ],
        ),
        ScriptedTurn(
            tool_calls=[
                ScriptedToolCall(
                    "edit_file",
                    {
                        "path": "main.py",
                        "old_text": '"""Command line for textstats',
                        "new_text": '"""AGENT: command line for textstats',
                    },
                ),
                ScriptedToolCall("run_command", {"command": MAKE_FILE}),
            ],
        ),
        text_turn("Done."),
    ]


async def _project(ecode_api: Any, ecode_workspace_root: Path) -> tuple[str, Path]:
    created = await ecode_api(
        "POST", "projects", body={"name": "words", "template": "python-script"}
    )
    assert created.status == 201, created.body
    pid = created.body["id"]
    return pid, ecode_workspace_root / pid


def _files(ws: Path) -> dict[str, bytes]:
    skip = {".venv", "__pycache__", ".pytest_cache", ".ecode"}
    return {
        p.relative_to(ws).as_posix(): p.read_bytes()
        for p in ws.rglob("*")
        if p.is_file() and not skip & set(p.relative_to(ws).parts)
    }


async def test_undo_puts_back_every_file_the_run_changed(
    ecode_api: Any, ecode_workspace_root: Path, run_script: RunScript
) -> None:
    pid, ws = await _project(ecode_api, ecode_workspace_root)
    before = _files(ws)
    run = await run_script(pid, five_file_run())
    assert run["status"] == "completed", run
    assert (ws / "made.txt").exists() and "AGENT" in (ws / "main.py").read_text()

    undone = await ecode_api("POST", f"runs/{run['id']}/undo")

    assert undone.status == 200, undone.body
    assert sorted(undone.body["restored"]) == [
        "README.md",
        "conf/app.toml",
        "made.txt",
        "main.py",
        "notes.md",
    ]
    assert undone.body["conflicts"] == [] and undone.body["merged"] == []
    after = _files(ws)
    assert after == before, set(after) ^ set(before)
    audit = await ecode_api("GET", f"audit?action=run.undo&project={pid}", user="admin")
    assert [e["target_id"] for e in audit.body["events"]] == [run["id"]]


async def test_undo_merges_a_persons_edit_and_reports_an_overlapping_one(
    ecode_api: Any, ecode_workspace_root: Path, run_script: RunScript
) -> None:
    pid, ws = await _project(ecode_api, ecode_workspace_root)
    original_main = (ws / "main.py").read_text()
    run = await run_script(pid, five_file_run())
    # After the run a person edits README.md elsewhere than the agent did (mergeable), and
    # rewrites the very line of main.py the agent changed (a conflict).
    readme = (ws / "README.md").read_text()
    (ws / "README.md").write_text(readme + "\nA line a person added.\n")
    person_main = (ws / "main.py").read_text().replace("AGENT: command", "PERSON: command")
    (ws / "main.py").write_text(person_main)

    undone = await ecode_api("POST", f"runs/{run['id']}/undo")

    assert undone.status == 200, undone.body
    assert undone.body["merged"] == ["README.md"]
    merged = (ws / "README.md").read_text()
    assert README_LINE in merged and "AGENT-EDITED" not in merged
    assert merged.endswith("A line a person added.\n")
    # The conflict is reported with what the undo wanted, and the person's file is untouched.
    [conflict] = undone.body["conflicts"]
    assert conflict["path"] == "main.py"
    assert conflict["wanted"] == original_main
    assert "<<<<<<< now" in conflict["merge"] and "PERSON: command" in conflict["merge"]
    assert (ws / "main.py").read_text() == person_main
    assert "main.py" not in undone.body["restored"]


async def test_restore_to_a_step(
    ecode_api: Any, ecode_workspace_root: Path, run_script: RunScript
) -> None:
    pid, ws = await _project(ecode_api, ecode_workspace_root)
    original_main = (ws / "main.py").read_text()
    run = await run_script(pid, five_file_run())
    listed = await ecode_api("GET", f"projects/{pid}/checkpoints")
    assert listed.status == 200, listed.body
    ours = [c for c in listed.body["checkpoints"] if c["run_id"] == run["id"]]
    # Newest first: step 2, step 1, the run's start.
    assert [(c["kind"], c["step"]) for c in ours] == [("step", 2), ("step", 1), ("start", 0)]
    assert ours[1]["changed"] == ["README.md", "conf/app.toml", "notes.md"]
    step1 = ours[1]["id"]

    restored = await ecode_api("POST", f"projects/{pid}/checkpoints/{step1}/restore")

    assert restored.status == 200, restored.body
    assert sorted(restored.body["restored"]) == ["made.txt", "main.py"]
    assert not (ws / "made.txt").exists()
    assert (ws / "main.py").read_text() == original_main
    assert (ws / "notes.md").read_text() == "# Notes\n"
    assert "AGENT-EDITED" in (ws / "README.md").read_text()
    # The restore is a checkpoint of its own, so it can be undone by restoring the one before.
    assert restored.body["checkpoint"]["kind"] == "restore"
    missing = await ecode_api("POST", f"projects/{pid}/checkpoints/9999/restore")
    assert missing.status == 404


async def test_viewers_and_strangers_are_refused(
    ecode_api: Any, ecode_workspace_root: Path, run_script: RunScript
) -> None:
    pid, ws = await _project(ecode_api, ecode_workspace_root)
    run = await run_script(pid, five_file_run())
    shared = await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "viewer"})
    assert shared.status in (200, 201), shared.body

    for user, status in (("bob", 403), ("carol", 404)):
        listed = await ecode_api("GET", f"projects/{pid}/checkpoints", user=user)
        undo = await ecode_api("POST", f"runs/{run['id']}/undo", user=user)
        restore = await ecode_api("POST", f"projects/{pid}/checkpoints/1/restore", user=user)
        assert (listed.status, undo.status, restore.status) == (status,) * 3, user
    # Nothing was reverted by the refused calls.
    assert (ws / "made.txt").exists()


async def test_steps_that_change_nothing_store_nothing(
    ecode_api: Any, ecode_workspace_root: Path, run_script: RunScript, checkpoints_dir: Path
) -> None:
    pid, ws = await _project(ecode_api, ecode_workspace_root)
    await run_script(pid, five_file_run())
    listed = await ecode_api("GET", f"projects/{pid}/checkpoints")
    stored = _stored_bytes(checkpoints_dir / pid)
    # A second run that only looks, and writes a file with the content it already has.
    same = (ws / "notes.md").read_text()
    run = await run_script(
        pid,
        [
            tool_turn("read_file", {"path": "README.md"}),
            tool_turn("write_file", {"path": "notes.md", "content": same}),
            text_turn("Nothing to change."),
        ],
    )
    assert run["status"] == "completed", run

    again = await ecode_api("GET", f"projects/{pid}/checkpoints")
    new = [c for c in again.body["checkpoints"] if c["run_id"] == run["id"]]
    # Only the run's start is recorded (its steps changed nothing), and it added no file.
    assert [c["kind"] for c in new] == ["start"]
    assert new[0]["new_bytes"] == 0
    assert len(again.body["checkpoints"]) == len(listed.body["checkpoints"]) + 1
    # On disk: one small record more, no blob.
    assert _stored_bytes(checkpoints_dir / pid) - stored < 2_000


def _stored_bytes(root: Path) -> int:
    return sum(
        p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != "statcache.json"
    )


async def test_the_cli_lists_checkpoints_and_undoes_a_run_through_the_server(
    ecode_api: Any,
    ecode_workspace_root: Path,
    run_script: RunScript,
    jp_http_port: int,
    jp_base_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pid, ws = await _project(ecode_api, ecode_workspace_root)
    before = _files(ws)
    run = await run_script(pid, five_file_run())
    monkeypatch.setenv("ECODE_TOKEN", ecode_token_for("alice"))
    server = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"

    # main() runs its own event loop: off this test's loop, as from a terminal.
    assert await asyncio.to_thread(main, ["--server", server, "checkpoints", pid]) == 0
    listing = capsys.readouterr().out
    assert "step" in listing and "start" in listing and "notes.md" in listing
    assert await asyncio.to_thread(main, ["--server", server, "undo", run["id"]]) == 0
    out = capsys.readouterr().out
    assert "put back  main.py" in out and "put back  made.txt" in out
    assert _files(ws) == before


async def test_a_run_cancelled_mid_step_is_undone_too(
    ecode_api: Any,
    ecode_workspace_root: Path,
    ecode_anthropic_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pid, ws = await _project(ecode_api, ecode_workspace_root)
    server = ecode_anthropic_loopback(
        [
            ScriptedTurn(
                tool_calls=[
                    ScriptedToolCall("write_file", {"path": "half.py", "content": "x = 1\n"}),
                    ScriptedToolCall("run_command", {"command": "sleep 60"}),
                ]
            ),
            text_turn("Done."),
        ]
    )
    use_loopback("anthropic", server, monkeypatch)
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "go"})
    run_id = started.body["id"]
    while not any(
        e["type"] == "command.output"
        or e["type"] == "tool.call"
        and e["data"]["name"] == "run_command"
        for e in await events(ecode_api, run_id)
    ):
        await asyncio.sleep(0.05)
    assert (ws / "half.py").exists()
    await ecode_api("POST", f"runs/{run_id}/cancel")
    assert (await wait_final(ecode_api, run_id))["status"] == "cancelled"

    undone = await ecode_api("POST", f"runs/{run_id}/undo")

    assert undone.status == 200, undone.body
    assert undone.body["restored"] == ["half.py"]
    assert not (ws / "half.py").exists()


async def test_what_a_person_saved_between_the_runs_steps_survives_its_undo(
    ecode_api: Any,
    ecode_workspace_root: Path,
    ecode_anthropic_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pid, ws = await _project(ecode_api, ecode_workspace_root)
    readme = (ws / "README.md").read_text()
    turns = [
        tool_turn(
            "edit_file",
            {"path": "README.md", "old_text": README_LINE, "new_text": "AGENT STEP 1 line"},
        ),
        tool_turn(
            "edit_file",
            {"path": "README.md", "old_text": "## Use it", "new_text": "## AGENT STEP 2"},
        ),
        text_turn("Done."),
    ]

    asked: list[Any] = []

    def respond(request: Any) -> ScriptedTurn:
        # (Not server.requests: the loopback holds its lock while it asks a responder.)
        asked.append(request)
        if len(asked) == 2:
            # While the model "thinks" about step 2, a collaborator's edit is saved to disk.
            path = ws / "README.md"
            path.write_text(path.read_text() + "A note a person saved mid-run.\n")
        return turns[min(len(asked), len(turns)) - 1]

    server = ecode_anthropic_loopback(respond)
    use_loopback("anthropic", server, monkeypatch)
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "go"})
    run = await wait_final(ecode_api, started.body["id"])
    assert "AGENT STEP 2" in (ws / "README.md").read_text()

    undone = await ecode_api("POST", f"runs/{run['id']}/undo")

    assert undone.status == 200, undone.body
    assert undone.body["merged"] == ["README.md"] and undone.body["conflicts"] == []
    assert (ws / "README.md").read_text() == readme + "A note a person saved mid-run.\n"
    listed = await ecode_api("GET", f"projects/{pid}/checkpoints")
    kinds = [c["kind"] for c in listed.body["checkpoints"] if c["run_id"] == run["id"]]
    # The person's edit is a checkpoint of its own, before step 2's tools.
    assert kinds == ["undo", "step", "pre", "step", "start"]
