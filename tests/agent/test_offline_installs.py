"""The offline provider with package installs on (as a user's server has them): a template's
requirements go into the project's own .venv before its tests run, and a run cancelled while
pip installs them is finished by continuing it.

Each run installs the Streamlit template's packages from the package index: skipped with the
reason when the index cannot serve them.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from .feed import events, of_type, wait_final

STREAMLIT = "streamlit>=1.30,<2"


@functools.cache
def index_problem() -> str | None:
    """Why Streamlit cannot be installed here, or None (asked once per test session)."""
    with tempfile.TemporaryDirectory() as folder:
        argv = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder]
        try:
            subprocess.run([*argv, STREAMLIT], capture_output=True, timeout=120, check=True)
        except (subprocess.SubprocessError, OSError) as exc:
            return f"the package index cannot serve streamlit ({type(exc).__name__})"
    return None


# Real installs from the package index: the database has no part in them, so CI runs them
# once (on SQLite), not again on PostgreSQL (.ci/run).
pytestmark = pytest.mark.installs


@pytest.fixture
def agent_config() -> dict[str, Any]:
    return {"agent_offline_installs": True, "agent_max_wall_time_s": 400.0}


@pytest.fixture(autouse=True)
def _package_index() -> None:
    problem = index_problem()
    if problem is not None:
        pytest.skip(problem)


def venv_has(workspace: Path, module: str) -> bool:
    python = workspace / ".venv" / "bin" / "python"
    return subprocess.run([str(python), "-c", f"import {module}"], check=False).returncode == 0


async def test_a_streamlit_prompt_installs_into_its_venv_tests_and_previews_on_its_first_run(
    ecode_api: Any, ecode_workspace_root: Path
) -> None:
    made = await ecode_api(
        "POST", "projects", body={"name": "dash", "prompt": "a streamlit dashboard"}
    )
    assert made.status == 201, made.body
    run = await wait_final(ecode_api, made.body["run"]["id"])
    feed = await events(ecode_api, run["id"])
    assert run["status"] == "completed", (run, [e["data"] for e in feed][-4:])
    assert run["summary"]["tests"]["passed"] is True
    assert run["summary"]["preview"]["status"] == "running"
    workspace = ecode_workspace_root / made.body["id"]
    # The project's own Python has what its tests and its app need.
    assert venv_has(workspace, "streamlit") and venv_has(workspace, "pytest")
    installs = [e for e in of_type(feed, "tool.call") if e["data"]["name"] == "install_packages"]
    assert installs and STREAMLIT in installs[0]["data"]["arguments"]["packages"]


async def test_a_run_cancelled_while_pip_installs_is_finished_by_continuing_it(
    ecode_api: Any, ecode_workspace_root: Path
) -> None:
    made = await ecode_api(
        "POST", "projects", body={"name": "dash", "prompt": "a streamlit dashboard"}
    )
    run_id = made.body["run"]["id"]
    # Cancel once pip is printing: the install is cut off halfway.
    while True:
        feed = await events(ecode_api, run_id)
        calls = of_type(feed, "tool.call")
        install = [e for e in calls if e["data"]["name"] == "install_packages"]
        if install and any(e["seq"] > install[0]["seq"] for e in of_type(feed, "command.output")):
            break
        assert not of_type(feed, "run.completed") and not of_type(feed, "run.failed"), feed[-1]
        await asyncio.sleep(0.1)
    # The install turn is plan item 1 ("install"), and no later turn has begun: a client shows
    # "install" in progress, not ticked.
    model_steps = [e["data"] for e in of_type(feed, "step.started") if e["data"]["kind"] == "model"]
    assert model_steps[-1]["plan_item"] == 1
    assert (await ecode_api("POST", f"runs/{run_id}/cancel")).status == 200
    cancelled = await wait_final(ecode_api, run_id)
    assert cancelled["status"] == "cancelled"
    workspace = ecode_workspace_root / made.body["id"]
    # What a cut-off `python -m venv` leaves (ensurepip killed): a python without pip.
    for pip in (workspace / ".venv" / "lib").glob("python3*/site-packages/pip"):
        subprocess.run(["rm", "-rf", str(pip)], check=True)

    resumed = await ecode_api("POST", f"runs/{run_id}/continue")
    assert resumed.status in (200, 201), resumed.body
    run = await wait_final(ecode_api, resumed.body["id"])
    feed = await events(ecode_api, run["id"])
    assert run["status"] == "completed", (run, [e["data"] for e in feed][-4:])
    assert run["summary"]["tests"]["passed"] is True
    assert venv_has(workspace, "streamlit") and venv_has(workspace, "pip")
