"""Project kernels on a real Jupyter Enterprise Gateway (loopback), the way a cluster runs
them: the server's kernel manager is the gateway's (``c.GatewayClient.url``), the agent's
``execute_code`` starts the project's kernel there with the project and the user passed as
``KERNEL_*`` variables, keeps its state between calls, and deleting the project stops it.

Enterprise Gateway 3 pins jupyter_server < 2, so it runs from a virtual environment of its
own: ``.ci/run`` makes one and names its executable in ``ECODE_TEST_ENTERPRISE_GATEWAY``.
Without it the test skips and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tools.conftest import McpConnect, text_of

from .conftest import JupyterCall


def _gateway_executable() -> str | None:
    named = os.environ.get("ECODE_TEST_ENTERPRISE_GATEWAY", "")
    if named and os.access(named, os.X_OK):
        return named
    return shutil.which("jupyter-enterprisegateway")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    from jupyter_server.gateway.gateway_client import GatewayClient

    executable = _gateway_executable()
    if executable is None:
        pytest.skip("Jupyter Enterprise Gateway is not installed (.ci/run installs it)")
    # jupyter_server keeps the gateway's settings in a process-wide singleton, made by the
    # first server of the session without a gateway: dropped here so this test's server
    # reads its own GatewayClient.url, and again after it for the servers that follow.
    GatewayClient.clear_instance()
    # The gateway's own kernelspec for ecode projects: its environment's Python.
    python = str(Path(executable).with_name("python"))
    spec_dir = tmp_path / "eg" / "kernels" / "ecode-python"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (ecode project, on the gateway)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_PATH": str(tmp_path / "eg"),
        "JUPYTER_DATA_DIR": str(tmp_path / "eg" / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "eg" / "runtime"),
    }
    log = (tmp_path / "eg.log").open("wb")
    proc = subprocess.Popen(
        [
            executable,
            "--ip=127.0.0.1",
            f"--port={port}",
            "--EnterpriseGatewayApp.list_kernels=True",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # until it answers (a cold start imports a lot)
            try:
                with urllib.request.urlopen(f"{url}/api/kernelspecs", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"the gateway exited:\n{(tmp_path / 'eg.log').read_text()}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        GatewayClient.clear_instance()


@pytest.fixture
def ecode_extra_config(gateway: str) -> dict[str, Any]:
    return {"EcodeApp": {"kernel_pool_size": 0}, "GatewayClient": {"url": gateway}}


def _gateway_kernels(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/kernels", timeout=10) as answer:
        return list(json.loads(answer.read()))


async def test_the_agent_runs_project_code_on_the_gateway(
    gateway: str,
    mcp_connect: McpConnect,
    make_project: Any,
    ecode_api: Any,
    jupyter_api: JupyterCall,
    jp_serverapp: Any,
) -> None:
    from jupyter_server.gateway.managers import GatewayMappingKernelManager

    # The server's kernels are the gateway's (not a local fallback that would pass too).
    assert isinstance(jp_serverapp.kernel_manager, GatewayMappingKernelManager)
    pid, _ = await make_project("remote")
    async with mcp_connect("alice") as client:
        first = await client.call_tool(
            "execute_code",
            {
                "project": pid,
                "code": "import os\nx = 41\n"
                "print(os.environ['KERNEL_ECODE_PROJECT'], os.environ['KERNEL_USERNAME'])",
            },
        )
        assert "[status: ok" in text_of(first), text_of(first)
        assert f"{pid} alice" in text_of(first)
        # The same kernel again: its state is kept.
        second = await client.call_tool("execute_code", {"project": pid, "code": "print(x + 1)"})
        assert "42" in text_of(second), text_of(second)
    # The kernel is the gateway's, and the server lists it like any other.
    remote = _gateway_kernels(gateway)
    assert [k["name"] for k in remote] == ["ecode-python"]
    status, listed = await jupyter_api("GET", "kernels")
    assert status == 200 and [k["id"] for k in listed] == [remote[0]["id"]]
    # Deleting the project stops its kernel on the gateway.
    assert (await ecode_api("DELETE", f"projects/{pid}")).status == 200
    assert _gateway_kernels(gateway) == []
