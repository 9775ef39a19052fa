"""Checkpoint tests: scripted agent runs against the loopback Anthropic server, then undo."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agent.conftest import MODEL_ENV
from agent.feed import wait_final
from agent.scripts import use_loopback

from ecode_jupyter.testing import ScriptedTurn


@pytest.fixture(autouse=True)
def agent_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # As tests/agent: no keys from the environment, and this Python for project commands.
    for name in MODEL_ENV:
        monkeypatch.delenv(name, raising=False)
    bindir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join([bindir, os.environ.get("PATH", os.defpath)]))
    yield


@pytest.fixture
def checkpoints_dir(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints"


@pytest.fixture
def ecode_extra_config(checkpoints_dir: Path) -> dict[str, Any]:
    return {
        "EcodeApp": {
            "agent_offline_installs": False,
            "agent_max_wall_time_s": 120.0,
            "checkpoints_dir": str(checkpoints_dir),
        }
    }


RunScript = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def run_script(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> RunScript:
    """``await run_script(project_id, turns)``: one run of ``turns``, waited to its end."""

    async def run(project_id: str, turns: list[ScriptedTurn], prompt: str = "change it") -> Any:
        server = ecode_anthropic_loopback(turns)
        use_loopback("anthropic", server, monkeypatch)
        started = await ecode_api("POST", f"projects/{project_id}/runs", body={"prompt": prompt})
        assert started.status == 201, started.body
        return await wait_final(ecode_api, started.body["id"])

    return run
