"""The project's rules (AGENTS.md, .ecode/rules.md) reach the model's instructions, read
through the tools like the rest of the project's facts (so on a hub too), with secret values
redacted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.testing import LoopbackRequest, ScriptedTurn, text_turn

from .feed import wait_final


async def test_the_rules_files_are_in_the_instructions(
    ecode_api: Any,
    ecode_workspace_root: Path,
    ecode_anthropic_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def respond(request: LoopbackRequest) -> ScriptedTurn:
        return text_turn("Nothing to change.")

    server = ecode_anthropic_loopback(respond)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    pid = (await ecode_api("POST", "projects", body={"name": "Ruled"})).body["id"]
    await ecode_api("PUT", f"projects/{pid}/secrets/TOKEN", body={"value": "tok-3141592"})
    workspace = ecode_workspace_root / pid
    (workspace / "AGENTS.md").write_text("Always answer in French. Use tabs, never spaces.\n")
    (workspace / ".ecode").mkdir(exist_ok=True)
    (workspace / ".ecode" / "rules.md").write_text("Never touch legacy/. Key: tok-3141592\n")
    run = await ecode_api(
        "POST", f"projects/{pid}/runs", body={"prompt": "tidy up", "model": "claude-haiku-4-5"}
    )
    assert run.status == 201, run.body
    await wait_final(ecode_api, run.body["id"])
    system = json.dumps(server.requests[0].json["system"])
    assert "The project's rules (AGENTS.md)" in system
    assert "Always answer in French" in system
    assert "The project's rules (.ecode/rules.md)" in system
    assert "Never touch legacy/" in system
    # A secret's value in a rules file reaches the model as the secret's name only.
    assert "tok-3141592" not in system


async def test_no_rules_no_section(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ecode_anthropic_loopback(lambda request: text_turn("Nothing to change."))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    pid = (await ecode_api("POST", "projects", body={"name": "Plain"})).body["id"]
    run = await ecode_api(
        "POST", f"projects/{pid}/runs", body={"prompt": "look", "model": "claude-haiku-4-5"}
    )
    await wait_final(ecode_api, run.body["id"])
    assert "The project's rules" not in json.dumps(server.requests[0].json["system"])
