"""Tool-call round trip: over MCP (streamable HTTP, real Jupyter server) vs direct calls.

Starts a real ``jupyter server`` with the ecode extension in a throwaway folder, creates a
project over REST, then times the same small tool call three ways in one run:

- direct: the workspace function the tool wraps (``WorkspaceWriter.read_text``);
- in-process: ``ToolLayer.call`` (argument validation, result conversion), once with a fixed
  project and once authorizing against the server's database like the server does;
- MCP: the ``mcp`` SDK client over streamable HTTP to ``/api/ecode/mcp``.

Prints p50/p99 per path and the ratios against the direct call. Run:

    python benchmarks/bench_mcp_roundtrip.py [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx2
from _common import TOKEN, free_port, pct, spawn_jupyter, wait_ready
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from ecode_jupyter.db import Database
from ecode_jupyter.db.models import Role
from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.projects.manager import ProjectManager
from ecode_jupyter.tools.context import ManagerProjectAccess, ToolProject, project_environment
from ecode_jupyter.tools.server import ToolLayer
from ecode_jupyter.workspace.writer import WorkspaceWriter


async def timed(n: int, fn: Callable[[], Awaitable[object]]) -> list[float]:
    for _ in range(max(10, n // 10)):  # warm up
        await fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


class StaticAccess:
    def __init__(self, project: ToolProject) -> None:
        self.project = project

    async def open(self, user: EcodeUser, project_id: str, *, write: bool) -> ToolProject:
        return self.project


async def main(calls: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ecode-bench-") as raw:
        tmp = Path(raw)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = spawn_jupyter(tmp, port, env={"ECODE_WORKSPACE_ROOT": str(tmp / "workspaces")})
        try:
            await wait_ready(proc, base)
            headers = {"Authorization": f"token {TOKEN}"}
            async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
                created = await http.post(f"{base}/api/ecode/projects", json={"name": "bench"})
                created.raise_for_status()
                pid = created.json()["id"]
                workspace = tmp / "workspaces" / pid
                (workspace / "hello.py").write_text("print('hello')\n" * 20)
                args = {"project": pid, "path": "hello.py"}

                writer = WorkspaceWriter(workspace)
                project = ToolProject(
                    id=pid,
                    workspace=workspace.resolve(),
                    role=Role.owner,
                    env=project_environment(workspace, {}),
                )
                layer = ToolLayer(StaticAccess(project))
                user = EcodeUser("bench", "bench", False)
                # The same authorization the server does: the project row and the role.
                db = Database(f"sqlite:///{tmp / 'ecode.sqlite'}")
                owner = EcodeUser(created.json()["owner"], "owner", True)
                authorized = ToolLayer(ManagerProjectAccess(ProjectManager(db, tmp / "workspaces")))

                direct = await timed(calls, lambda: writer.read_text("hello.py"))
                in_process = await timed(calls, lambda: layer.call("read_file", args, user))
                with_db = await timed(calls, lambda: authorized.call("read_file", args, owner))
                async with Client(
                    streamable_http_client(f"{base}/api/ecode/mcp", http_client=http)
                ) as client:
                    over_mcp = await timed(calls, lambda: client.call_tool("read_file", args))
                await layer.stop()
                await authorized.stop()
                db.dispose()
        finally:
            proc.terminate()
            proc.wait(timeout=20)

    base_p50 = pct(direct, 0.5)
    print(f"read_file round trip, {calls} calls each (ms)")
    print(f"{'path':<34}{'p50':>9}{'p99':>9}{'mean':>9}{'x direct p50':>14}")
    for name, samples in (
        ("direct WorkspaceWriter.read_text", direct),
        ("in-process ToolLayer.call", in_process),
        ("in-process, authorized via DB", with_db),
        ("MCP streamable HTTP (real server)", over_mcp),
    ):
        p50 = pct(samples, 0.5)
        print(
            f"{name:<34}{p50:>9.3f}{pct(samples, 0.99):>9.3f}"
            f"{statistics.fmean(samples):>9.3f}{p50 / base_p50:>14.1f}"
        )
    ratio = pct(over_mcp, 0.5) / pct(with_db, 0.5)
    print(f"MCP over HTTP vs the same call in-process (with DB authorization): {ratio:.1f}x p50")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    asyncio.run(main(parser.parse_args().calls))
