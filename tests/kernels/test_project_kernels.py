"""Project kernels as a Lab user and the agent meet them: a real server, its REST API and
kernel WebSocket, the ecode-python kernelspec and provisioner, bubblewrap.

What is attacked: a kernel started for another user's project, a kernel with no project,
and what a kernel's code can see of the server (its environment, its runtime folder).
The full escape suite runs from a kernel too (tests/sandbox/test_escape.py, ``kernel``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from tools.conftest import McpConnect, text_of

from .conftest import JupyterCall, WsExecute

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (.ci/run installs it)"
)


@pytest.fixture
def ecode_extra_config() -> dict[str, Any]:
    # "required": a host where bubblewrap cannot run fails here instead of passing unconfined.
    return {"EcodeApp": {"sandbox": "required"}}


async def _notebook_session(
    jupyter_api: JupyterCall, workspace: Path, root: Path, *, user: str = "alice"
) -> tuple[int, Any]:
    path = (workspace / "analysis.ipynb").relative_to(root).as_posix()
    return await jupyter_api(
        "POST",
        "sessions",
        {"path": path, "type": "notebook", "name": "", "kernel": {"name": "ecode-python"}},
        user=user,
    )


async def test_lab_lists_the_project_kernelspec(jupyter_api: JupyterCall) -> None:
    status, specs = await jupyter_api("GET", "kernelspecs")
    assert status == 200
    spec = specs["kernelspecs"]["ecode-python"]["spec"]
    assert spec["display_name"] == "Python (ecode project)"
    assert spec["metadata"]["kernel_provisioner"]["provisioner_name"] == "ecode-provisioner"


async def test_a_notebook_in_a_project_runs_in_its_sandbox_with_its_environment(
    jupyter_api: JupyterCall,
    ws_execute: WsExecute,
    make_project: Any,
    ecode_api: Any,
    jp_root_dir: Path,
    jp_runtime_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = f"server-only-{uuid.uuid4().hex}"
    monkeypatch.setenv("ECODE_KERNEL_MARKER", marker)
    pid, workspace = await make_project("notebook")
    await ecode_api("PUT", f"projects/{pid}/secrets/GREETING", body={"value": "hi there"})
    status, session = await _notebook_session(jupyter_api, workspace, jp_root_dir)
    assert status == 201, session
    kernel = session["kernel"]
    assert kernel["name"] == "ecode-python"
    probe = (
        "import json, os\n"
        "def readable(p):\n"
        "    try:\n"
        "        os.listdir(p) if os.path.isdir(p) else open(p).read()\n"
        "        return True\n"
        "    except OSError:\n"
        "        return False\n"
        "print(json.dumps({'cwd': os.getcwd(), 'greeting': os.environ.get('GREETING'),\n"
        "  'db': os.environ.get('DATABASE_URL'),\n"
        "  'project': os.environ.get('KERNEL_ECODE_PROJECT'),\n"
        "  'marker': [k for k, v in os.environ.items() if v == " + repr(marker) + "],\n"
        "  'runtime': readable(" + repr(str(jp_runtime_dir)) + "),\n"
        "  'pid1': open('/proc/1/cmdline').read().split(chr(0))[0]}))\n"
    )
    out = await ws_execute(kernel["id"], probe)
    assert out["status"] == "ok", out
    seen = json.loads(out["stdout"])
    assert seen["cwd"] == str(workspace.resolve())
    assert seen["greeting"] == "hi there"  # the project's secret, as run_command gets it
    assert seen["db"].endswith(".ecode/database.sqlite3")
    assert seen["project"] == pid
    # The server's own environment and runtime folder (its token) are out of reach, and the
    # kernel is in a PID namespace of its own (bubblewrap's init is PID 1).
    assert seen["marker"] == []
    assert seen["runtime"] is False
    assert "bwrap" in seen["pid1"]


async def test_the_agent_and_the_notebook_share_one_kernel(
    jupyter_api: JupyterCall,
    ws_execute: WsExecute,
    mcp_connect: McpConnect,
    make_project: Any,
    jp_root_dir: Path,
) -> None:
    pid, workspace = await make_project("shared")
    status, session = await _notebook_session(jupyter_api, workspace, jp_root_dir)
    assert status == 201, session
    out = await ws_execute(session["kernel"]["id"], "shared = 41")
    assert out["status"] == "ok", out
    async with mcp_connect("alice") as client:
        result = await client.call_tool(
            "execute_code", {"project": pid, "code": "print(shared + 1)\nagent_was_here = True"}
        )
    assert not result.is_error, result
    assert "42" in text_of(result)
    # ...and what the agent did is in the notebook's kernel.
    out = await ws_execute(session["kernel"]["id"], "print(agent_was_here)")
    assert out["stdout"].strip() == "True", out
    status, kernels = await jupyter_api("GET", "kernels")
    assert [k["id"] for k in kernels] == [session["kernel"]["id"]]


async def test_the_agents_kernel_is_listed_and_stops_with_its_project(
    jupyter_api: JupyterCall,
    mcp_connect: McpConnect,
    make_project: Any,
    ecode_api: Any,
) -> None:
    pid, _ = await make_project("listed")
    async with mcp_connect("alice") as client:
        result = await client.call_tool("execute_code", {"project": pid, "code": "x = 1"})
    assert not result.is_error, result
    status, kernels = await jupyter_api("GET", "kernels")
    assert status == 200
    assert [k["name"] for k in kernels] == ["ecode-python"]
    deleted = await ecode_api("DELETE", f"projects/{pid}")
    assert deleted.status == 200, deleted.body
    status, kernels = await jupyter_api("GET", "kernels")
    assert kernels == []


async def test_deleting_a_project_ends_its_notebooks_sessions(
    jupyter_api: JupyterCall, make_project: Any, ecode_api: Any, jp_root_dir: Path
) -> None:
    pid, workspace = await make_project("with-notebook")
    before = set(_bwrap_processes())
    status, session = await _notebook_session(jupyter_api, workspace, jp_root_dir)
    assert status == 201, session
    sandboxes = set(_bwrap_processes()) - before
    assert sandboxes, "the kernel runs in bubblewrap"
    assert (await ecode_api("DELETE", f"projects/{pid}")).status == 200
    # The sandbox goes with the kernel: bubblewrap's init follows its parent out (a
    # parent-death signal, delivered a moment after the kernel's shutdown returns).
    for _ in range(200):
        if not sandboxes & set(_bwrap_processes()):
            break
        await asyncio.sleep(0.05)
    assert not sandboxes & set(_bwrap_processes())
    status, sessions = await jupyter_api("GET", "sessions")
    assert sessions == []
    status, kernels = await jupyter_api("GET", "kernels")
    assert kernels == []


def _bwrap_processes() -> list[int]:
    """Live bubblewrap processes (a zombie waiting for its parent's wait() does not count)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if comm == "bwrap" and state != "Z":
                found.append(int(entry.name))
    return found


async def test_another_users_project_gets_no_kernel(
    jupyter_api: JupyterCall, make_project: Any, jp_root_dir: Path
) -> None:
    _, workspace = await make_project("private", user="alice")
    status, answer = await _notebook_session(jupyter_api, workspace, jp_root_dir, user="bob")
    # jupyter_server answers a failed kernel start with 500 and the provisioner's reason.
    assert (status, answer["message"]) == (500, "no such project"), answer
    status, kernels = await jupyter_api("GET", "kernels", user="alice")
    assert kernels == []


async def test_a_notebook_outside_every_project_is_told_why(
    jupyter_api: JupyterCall, jp_root_dir: Path
) -> None:
    (jp_root_dir / "loose").mkdir()
    status, answer = await jupyter_api(
        "POST",
        "sessions",
        {"path": "loose/n.ipynb", "type": "notebook", "kernel": {"name": "ecode-python"}},
    )
    assert status == 500, answer
    assert "open the notebook inside a project's folder" in answer["message"]


async def test_interrupt_stops_a_long_execution(mcp_connect: McpConnect, make_project: Any) -> None:
    # The kernel runs in its own session and PID namespace: interrupts go by message.
    pid, _ = await make_project("interrupt")
    async with mcp_connect("alice") as client:
        result = await client.call_tool(
            "execute_code",
            {"project": pid, "code": "import time\ntime.sleep(60)", "timeout_s": 1},
        )
        text = text_of(result)
        assert "[status: timeout" in text and "interrupted" in text, text
        after = await client.call_tool("execute_code", {"project": pid, "code": "print('alive')"})
    assert "alive" in text_of(after)


LOOPBACK = {"EcodeApp": {"sandbox": "required", "sandbox_network": "loopback"}}


@pytest.mark.parametrize("ecode_extra_config", [LOOPBACK])
async def test_a_kernel_works_with_the_network_off(
    mcp_connect: McpConnect, make_project: Any, jp_http_port: int
) -> None:
    # No route to the host's loopback from the kernel's own network namespace: the server
    # talks to it over IPC sockets, and the kernel cannot reach the server's port.
    pid, _ = await make_project("offline")
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {jp_http_port}), timeout=3)\n"
        "    print('reached')\n"
        "except OSError as exc:\n"
        "    print('blocked', exc)\n"
    )
    async with mcp_connect("alice") as client:
        result = await client.call_tool("execute_code", {"project": pid, "code": code})
    text = text_of(result)
    assert "[status: ok" in text and "blocked" in text, text


async def test_the_kernel_websocket_sets_tcp_nodelay(jp_serverapp: Any) -> None:
    # Without TCP_NODELAY each small reply waits for the browser's delayed ACK (~40 ms a
    # round trip; benchmarks/bench_kernels.py measures it). The configured connection class
    # is kept, with the flag set on connect.
    from jupyter_server.services.kernels.connection.channels import (
        ZMQChannelsWebsocketConnection,
    )

    connection = jp_serverapp.web_app.settings["kernel_websocket_connection_class"]
    assert issubclass(connection, ZMQChannelsWebsocketConnection)
    assert connection.__name__ == "NoDelayZMQChannelsWebsocketConnection"


OWNED = {"EcodeApp": {"sandbox": "required", "owner_name": "alice"}}


@pytest.mark.parametrize("ecode_extra_config", [OWNED])
async def test_each_project_has_its_kernelspec_in_the_menu(
    jupyter_api: JupyterCall,
    ws_execute: WsExecute,
    make_project: Any,
    ecode_api: Any,
    jp_root_dir: Path,
) -> None:
    pid, workspace = await make_project("My App")
    await make_project("Not Mine", user="bob")
    found: dict[str, Any] = {}
    for _ in range(400):  # the list is refreshed in the background every few seconds
        status, specs = await jupyter_api("GET", "kernelspecs")
        found = specs["kernelspecs"]
        if "ecode-my-app" in found:
            break
        await asyncio.sleep(0.05)
    spec = found["ecode-my-app"]["spec"]
    assert spec["display_name"] == "Python (My App)"
    assert spec["env"]["KERNEL_ECODE_PROJECT"] == pid
    # Only the owner's projects: bob's is not in alice's server's menu.
    assert not [name for name in found if "not-mine" in name]

    # A notebook anywhere runs in the project's kernel: its workspace, its environment.
    status, session = await jupyter_api(
        "POST",
        "sessions",
        {"path": "scratch.ipynb", "type": "notebook", "kernel": {"name": "ecode-my-app"}},
    )
    assert status == 201, session
    out = await ws_execute(
        session["kernel"]["id"],
        "import os; print(os.getcwd()); print(os.environ['KERNEL_ECODE_PROJECT'])",
    )
    assert out["stdout"].split() == [str(workspace.resolve()), pid], out
    # Whoever starts it must be allowed to run the project's code: bob is not.
    status, answer = await jupyter_api(
        "POST",
        "sessions",
        {"path": "bob.ipynb", "type": "notebook", "kernel": {"name": "ecode-my-app"}},
        user="bob",
    )
    assert (status, answer["message"]) == (500, "no such project"), answer
