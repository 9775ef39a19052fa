"""The magics in a real ipykernel against a real server: a prompt becomes a completed run.

The server runs in this test process on pytest-jupyter's loop, and the kernel (another
process) calls it; so the tests drive the kernel with jupyter_client's async API and await,
leaving the loop free to serve the kernel's requests.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import AsyncKernelManager

from ecode_jupyter.pytest_plugin import ecode_token_for

from .fake_server import TOKEN, event, fake_ecode_server
from .kernel import CellOutput, kernel_env

MODEL_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
)
CELL_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def offline_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No model keys (the offline provider runs), and this Python first on the server's PATH."""
    for name in MODEL_ENV:
        monkeypatch.delenv(name, raising=False)
    bindir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join([bindir, os.environ.get("PATH", os.defpath)]))
    yield


async def _start_kernel(env: dict[str, str], cwd: Path) -> AsyncKernelManager:
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel(env=env, cwd=str(cwd))
    return km


async def _cell(kc: Any, code: str) -> CellOutput:
    out = CellOutput()
    reply = await kc.execute_interactive(code, output_hook=out.hook, timeout=CELL_TIMEOUT_S)
    out.status = reply["content"]["status"]
    return out


async def _with_kernel(env: dict[str, str], cwd: Path, body: Any) -> None:
    km = await _start_kernel(env, cwd)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        if body.__code__.co_argcount == 2:
            await body(kc, km)
        else:
            await body(kc)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def test_a_prompt_in_a_notebook_builds_a_project_to_completion(
    ecode_api: Any, jp_http_port: int, jp_base_url: str, tmp_path: Path
) -> None:
    env = kernel_env(
        ECODE_SERVER_URL=f"http://127.0.0.1:{jp_http_port}{jp_base_url}",
        ECODE_TOKEN=ecode_token_for("alice"),
    )

    async def body(kc: Any) -> None:
        loaded = await _cell(kc, "%load_ext ecode_jupyter")
        assert loaded.status == "ok", loaded.everything()

        empty = await _cell(kc, "%ecode projects")
        assert empty.status == "ok", empty.everything()
        assert "no projects yet" in empty.stdout

        run = await _cell(kc, "%ecode a Flask todo API with tests")
        assert run.status == "ok", run.everything()
        # One live display, updated in place as events arrive, ending on the final state.
        assert len(run.displays) == 1
        display_id = run.displays[0]["transient"]["display_id"]
        assert run.updates and all(u["transient"]["display_id"] == display_id for u in run.updates)
        final = run.final_display()
        assert "completed" in final
        assert "files changed: 7" in final
        assert "completed" in run.final_display("text/html")
        assert "app.py" in run.final_display("text/html")
        # The summary printed at the end: status, files, tests, cost.
        assert "@alice/a-flask-todo-api-with-tests completed" in run.stdout
        assert "7 files changed" in run.stdout
        assert re.search(r"tests: \d+ passed", run.stdout), run.stdout
        assert "created app.py" in run.stdout
        assert "0 credits" in run.stdout
        assert ecode_token_for("alice") not in run.everything()

        # The server agrees: one project, one completed run.
        projects = (await ecode_api("GET", "projects")).body["projects"]
        assert [p["name"] for p in projects] == ["A Flask todo API with tests"]
        runs = (await ecode_api("GET", f"projects/{projects[0]['id']}/runs")).body["runs"]
        assert [r["status"] for r in runs] == ["completed"]

        listed = await _cell(kc, "%ecode projects")
        assert "* " in listed.final_display() and "A Flask todo API with tests" in (
            listed.final_display()
        )
        history = await _cell(kc, "%ecode runs")
        assert runs[0]["id"] in history.final_display()
        assert "completed" in history.final_display()
        status = await _cell(kc, "%ecode status")
        assert f"run {runs[0]['id']}: completed" in status.stdout
        credits = await _cell(kc, "%ecode credits")
        assert credits.status == "ok", credits.everything()
        assert "credits of alice" in credits.stdout or "billing is not enabled" in credits.stdout

        model = await _cell(kc, "%ecode model")
        assert "no default model set" in model.stdout
        await _cell(kc, "%ecode model some-model")
        assert (
            "default model for this session: some-model" in (await _cell(kc, "%ecode model")).stdout
        )

        missing = await _cell(kc, "%ecode use no-such-project")
        assert missing.status == "error"
        # A usage error: one red line saying what to do, no traceback.
        assert "UsageError: no project 'no-such-project'" in missing.stderr
        assert "%ecode projects" in missing.stderr
        assert "Traceback" not in missing.everything()

        used = await _cell(kc, "%ecode use @alice/a-flask-todo-api-with-tests")
        assert "using project A Flask todo API with tests" in used.stdout

    await _with_kernel(env, tmp_path, body)


async def test_the_kernel_finds_the_server_that_started_it(
    jp_serverapp: Any, http_server_client: Any, tmp_path: Path
) -> None:
    # No ECODE_SERVER_URL: the kernel reads the running-server list (the server wrote its
    # info file at start) and picks the server whose pid is its JPY_PARENT_PID.
    # (http_server_client makes the test server accept connections.)
    env = kernel_env()
    assert "JUPYTER_RUNTIME_DIR" in env
    token = jp_serverapp.identity_provider.token

    async def body(kc: Any) -> None:
        await _cell(kc, "%load_ext ecode_jupyter")
        where = await _cell(kc, "%ecode connect")
        assert "running server" in where.stdout, where.everything()
        assert f"pid {os.getpid()}" in where.stdout
        assert "with a token" in where.stdout
        # The server's own token from its info file logs in (a refused one is a 401 error).
        listed = await _cell(kc, "%ecode projects")
        assert listed.status == "ok", listed.everything()
        assert "no projects yet" in listed.stdout
        assert token not in listed.everything() + where.everything()

    await _with_kernel(env, tmp_path, body)


async def test_no_server_says_how_to_connect(tmp_path: Path) -> None:
    env = kernel_env(JUPYTER_RUNTIME_DIR=str(tmp_path / "empty-runtime"))
    env.pop("JUPYTERHUB_SERVICE_URL", None)

    async def body(kc: Any) -> None:
        await _cell(kc, "%load_ext ecode_jupyter")
        out = await _cell(kc, "%ecode projects")
        assert out.status == "error"
        assert "UsageError: no Jupyter server with ecode was found" in out.stderr
        assert "%ecode connect URL" in out.stderr

    await _with_kernel(env, tmp_path, body)


async def _iopub_until(kc: Any, msg_id: str, out: CellOutput, done: Any) -> None:
    """Feed ``out`` with the cell's iopub messages until ``done(msg)`` says stop."""
    while True:
        msg = await kc.get_iopub_msg(timeout=CELL_TIMEOUT_S)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        out.hook(msg)
        if done(msg):
            return


async def test_interrupting_the_cell_cancels_the_run(tmp_path: Path) -> None:
    # A scripted server holds the run open until it is cancelled: the only way to be sure
    # the interrupt lands while the run is live.
    with fake_ecode_server() as fake:
        fake.state.script = [
            event(1, "run.started", provider="offline", model="offline"),
            event(2, "step.started", step=1, kind="model"),
            event(3, "message.delta", step=1, text="working on it"),
        ]
        env = kernel_env(ECODE_SERVER_URL=fake.url, ECODE_TOKEN=TOKEN)

        async def body(kc: Any, km: AsyncKernelManager) -> None:
            await _cell(kc, "%load_ext ecode_jupyter")
            out = CellOutput()
            msg_id = kc.execute("%ecode build a thing")
            # The held-back text is drawn while the feed is quiet, then we press "stop".
            await _iopub_until(kc, msg_id, out, lambda m: "working on it" in out.everything())
            await km.interrupt_kernel()
            await _iopub_until(
                kc,
                msg_id,
                out,
                lambda m: (
                    m["header"]["msg_type"] == "status"
                    and m["content"]["execution_state"] == "idle"
                ),
            )
            run = fake.state.runs["run1"]
            assert run.cancel_requests == 1
            assert run.status == "cancelled"
            assert "interrupted: asking the server to cancel run run1" in out.stderr
            assert "run run1 in @alice/build-a-thing cancelled" in out.stdout
            assert "the run was cancelled" in out.stdout
            assert "cancelled" in out.final_display()
            # The cell ends as an interrupted cell does, so "Run All" stops here.
            assert [e["ename"] for e in out.errors] == ["KeyboardInterrupt"]

        await _with_kernel(env, tmp_path, body)


async def test_cell_prompts_detach_watch_and_error_messages(tmp_path: Path) -> None:
    with fake_ecode_server() as fake:
        fake.state.script = [
            event(1, "run.started", provider="offline", model="offline"),
            event(2, "file.changed", path="app.py", action="modified", added=3, removed=1),
            event(3, "run.completed", message="the project is built; tests pass"),
        ]
        env = kernel_env(ECODE_SERVER_URL=fake.url, ECODE_TOKEN=TOKEN)

        async def body(kc: Any) -> None:
            await _cell(kc, "%load_ext ecode_jupyter")
            # %%ecode: the cell body is the prompt; --detach returns at once, watch follows.
            detached = await _cell(kc, '%%ecode --new "Todo" --detach\nadd a /stats endpoint\n')
            assert "run run1 started in @alice/todo" in detached.stdout, detached.everything()
            assert fake.state.runs["run1"].prompt == "add a /stats endpoint"
            assert fake.state.connections == []  # detached: nobody follows the feed yet
            watched = await _cell(kc, "%ecode watch")
            assert "run run1 in @alice/todo completed · 1 file changed" in watched.stdout
            assert "modified app.py +3 −1" in watched.stdout
            assert fake.state.connections == [0]
            # The project is current now, but a prompt is a new project unless the user asks
            # to change one: --project . (the current one), --project REF, or `use` first.
            await _cell(kc, "%ecode a second app")
            first = fake.state.runs["run1"].project_id
            assert fake.state.runs["run2"].project_id != first
            await _cell(kc, "%ecode --project . make it faster")
            assert fake.state.runs["run3"].project_id == fake.state.runs["run2"].project_id
            await _cell(kc, "%ecode --project todo make it faster")
            assert fake.state.runs["run4"].project_id == first
            used = await _cell(kc, "%ecode use todo")
            assert "prompts change it now" in used.stdout
            await _cell(kc, "%ecode add a /health endpoint")
            assert fake.state.runs["run5"].project_id == first

            fake.state.fail_create = (402, "insufficient_credits", "this run needs 2 credits")
            broke = await _cell(kc, "%ecode --new Chat a chat app")
            assert broke.status == "error"
            assert "UsageError: this run needs 2 credits" in broke.stderr
            assert "Out of credits — ask your admin" in broke.stderr
            await _cell(kc, "%ecode connect " + fake.url + " wrong-token")
            refused = await _cell(kc, "%ecode projects")
            assert "bad token" in refused.stderr
            assert "%ecode connect URL TOKEN" in refused.stderr
            assert "wrong-token" not in refused.everything()

        await _with_kernel(env, tmp_path, body)
