"""The hub's extra hops: the ecode API through the service, tool calls into the owner's server.

Starts, in one run, the loopback hub of ``tests/hub/`` (configurable-http-proxy, the ecode
service, users as OS accounts; needs root) and a single-user Jupyter server with the ecode
extension, then times:

- ``GET /api/ecode/projects/{id}``: in the single-user server (the baseline: no hub), through
  the proxy to the service, and through the proxy to alice's server which forwards to the
  service (what Lab, ``%ecode`` and ``jupyter ecode`` do); plus a request alice's own server
  answers itself through the proxy (``api/status``), the proxy's own share;
- opening a project's own Lab: stopped (the service starts its server) and running, beside
  the hub spawning a plain named server;
- ``read_file``: in-process (``ToolLayer.call`` authorized against a database, as a single-user
  server runs it) and from the service's tool layer into alice's server (``RemoteToolLayer``
  with the service's token and database, as the service runs it).

Goals (issue 13): API through the service p50 <= 1.5x the single-user server; a tool call
from the service into the project's server adds <= 15 ms p50 (issue 14: a stopped project's
Lab answers within 5 s, a running one's within 0.5 s). Run as root:

    python benchmarks/bench_hub.py [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
from _common import TOKEN, free_port, pct, spawn_jupyter, wait_ready

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ecode_jupyter.context import build_context  # noqa: E402
from ecode_jupyter.db import Database  # noqa: E402
from ecode_jupyter.hub.projects import ProjectServers  # noqa: E402
from ecode_jupyter.hub.remote import (  # noqa: E402
    HubDirectory,
    HubLink,
    ProjectPlacement,
    RemoteToolLayer,
)
from ecode_jupyter.identity import EcodeUser  # noqa: E402
from ecode_jupyter.projects.manager import ProjectManager  # noqa: E402
from ecode_jupyter.tools.context import ManagerProjectAccess  # noqa: E402
from ecode_jupyter.tools.server import ToolLayer  # noqa: E402
from tests.hub.conftest import hub_prerequisites, start_hub  # noqa: E402


async def timed(n: int, fn: Callable[[], Awaitable[object]]) -> list[float]:
    for _ in range(max(10, n // 10)):  # warm up (sessions, connections, caches)
        await fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def row(name: str, samples: list[float], base: float) -> None:
    p50 = pct(samples, 0.5)
    print(
        f"{name:<46}{p50:>9.2f}{pct(samples, 0.99):>9.2f}"
        f"{statistics.fmean(samples):>9.2f}{p50 / base:>9.2f}x"
    )


async def single_user(calls: int) -> tuple[list[float], list[float]]:
    """GET a project in a single-user server; read_file in-process with DB authorization."""
    with tempfile.TemporaryDirectory(prefix="ecode-bench-hub-") as raw:
        tmp = Path(raw)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = spawn_jupyter(tmp, port, env={"ECODE_WORKSPACE_ROOT": str(tmp / "workspaces")})
        try:
            await wait_ready(proc, base)
            headers = {"Authorization": f"token {TOKEN}"}
            async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
                created = await http.post(
                    f"{base}/api/ecode/projects", json={"name": "bench", "template": "flask-api"}
                )
                created.raise_for_status()
                pid = created.json()["id"]
                owner = EcodeUser(created.json()["owner"], "owner", True)
                url = f"{base}/api/ecode/projects/{pid}"
                api = await timed(calls, lambda: http.get(url))
                db = Database(f"sqlite:///{tmp / 'ecode.sqlite'}")
                layer = ToolLayer(ManagerProjectAccess(ProjectManager(db, tmp / "workspaces")))
                args = {"project": pid, "path": "app.py"}
                tool = await timed(calls, lambda: layer.call("read_file", args, owner))
                await layer.stop()
                db.dispose()
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    return api, tool


async def on_the_hub(calls: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    with start_hub() as hub:
        created = hub.ecode(
            "POST", "projects", user="alice", body={"name": "bench", "template": "flask-api"}
        )
        created.raise_for_status()
        pid = created.json()["id"]
        token = {"Authorization": f"token {hub.tokens['alice']}"}
        async with httpx2.AsyncClient(headers=token, timeout=60) as http:
            service = f"{hub.url}services/ecode/api/ecode/projects/{pid}"
            server = f"{hub.url}user/alice/api/ecode/projects/{pid}"
            status = f"{hub.url}user/alice/api/status"
            results["api via proxy -> service"] = await timed(calls, lambda: http.get(service))
            results["api via proxy -> own server -> service"] = await timed(
                calls, lambda: http.get(server)
            )
            results["proxy floor: own server's api/status"] = await timed(
                calls, lambda: http.get(status)
            )
        # Part 2: open a project whose server is stopped (start + Lab answers) and one that
        # runs, beside the hub spawning a plain named server, in the same run.
        results.update(await open_project_servers(hub, pid, rounds=5))
        # The service's tool path, with its database and its token, from this process.
        context = build_context(
            database_url=f"sqlite:///{hub.service_dir / 'ecode.sqlite'}",
            workspace_root=str(hub.service_dir / "bench-workspaces"),
            secrets_key="",
            secrets_key_file=str(hub.service_dir / "bench-secrets.key"),
            owner_name="nobody",
            admin_users=set(),
            owner_is_admin=False,
            trash_retention_days=30,
            max_projects_per_user=500,
            auto_upgrade=False,
        )
        directory = HubDirectory(HubLink(hub.api_url, hub.ecode_token, hub.url))
        # As the example runs it: the project in a server of its own.
        remote = RemoteToolLayer(
            context, ProjectPlacement(context, directory, ProjectServers(directory))
        )
        alice = EcodeUser("alice", "alice", False)
        args = {"project": pid, "path": "app.py"}
        results["read_file service -> owner's server"] = await timed(
            calls, lambda: remote.call("read_file", args, alice)
        )
        await remote.stop()
        context.db.dispose()
    return results


async def open_project_servers(hub: Any, pid: str, rounds: int) -> dict[str, list[float]]:
    """Seconds to a Lab page: a stopped project opened, a running one, a plain named server."""
    token = {"Authorization": f"token {hub.tokens['alice']}"}
    service = f"{hub.url}services/ecode/api/ecode/projects/{pid}/server"
    cold: list[float] = []
    warm: list[float] = []
    plain: list[float] = []
    async with httpx2.AsyncClient(headers=token, timeout=300) as http:

        async def open_lab() -> float:
            start = time.perf_counter()
            opened = await http.post(service)
            opened.raise_for_status()
            lab = await http.get(f"{hub.url.rstrip('/')}{opened.json()['url']}")
            lab.raise_for_status()
            return time.perf_counter() - start

        async def stopped() -> None:
            await http.delete(service)
            while True:
                state = (await http.get(service)).json()
                if not state["ready"] and not state["pending"]:
                    return
                await asyncio.sleep(0.1)

        for _ in range(rounds):
            await stopped()
            cold.append(await open_lab())
            warm.append(await open_lab())
        admin = {"Authorization": f"token {hub.service_token}"}
        async with httpx2.AsyncClient(headers=admin, timeout=300) as hub_api:
            for i in range(rounds):
                name = f"plain{i}"
                start = time.perf_counter()
                resp = await hub_api.post(f"{hub.api_url}users/alice/servers/{name}")
                resp.raise_for_status()
                while True:
                    model = (await hub_api.get(f"{hub.api_url}users/alice")).json()
                    if (model["servers"].get(name) or {}).get("ready"):
                        break
                    await asyncio.sleep(0.1)
                lab = await http.get(f"{hub.url}user/alice/{name}/lab")
                lab.raise_for_status()
                plain.append(time.perf_counter() - start)
                await hub_api.delete(f"{hub.api_url}users/alice/servers/{name}?remove=true")
    return {
        "open a stopped project (s)": cold,
        "open a running project (s)": warm,
        "hub spawns a plain named server (s)": plain,
    }


async def main(calls: int) -> None:
    why = hub_prerequisites()
    if why is not None:
        print(f"cannot run the hub here: {why}")
        raise SystemExit(2)
    api_single, tool_single = await single_user(calls)
    hub = await on_the_hub(calls)
    base = pct(api_single, 0.5)
    print(f"\nThe ecode API, {calls} calls each (ms)")
    print(f"{'path':<46}{'p50':>9}{'p99':>9}{'mean':>9}{'vs base':>10}")
    row("single-user server (baseline)", api_single, base)
    for name in (
        "api via proxy -> service",
        "api via proxy -> own server -> service",
        "proxy floor: own server's api/status",
    ):
        row(name, hub[name], base)
    tool_base = pct(tool_single, 0.5)
    remote = hub["read_file service -> owner's server"]
    print(f"\nread_file, {calls} calls each (ms)")
    print(f"{'path':<46}{'p50':>9}{'p99':>9}{'mean':>9}{'vs base':>10}")
    row("in-process, authorized via DB (baseline)", tool_single, tool_base)
    row("service -> owner's server (MCP)", remote, tool_base)
    print("\nOpening a project's own Lab (seconds, 5 rounds each)")
    print(f"{'path':<46}{'p50':>9}{'max':>9}")
    for name in (
        "open a stopped project (s)",
        "open a running project (s)",
        "hub spawns a plain named server (s)",
    ):
        print(f"{name:<46}{pct(hub[name], 0.5):>9.2f}{max(hub[name]):>9.2f}")
    added = pct(remote, 0.5) - tool_base
    via_service = pct(hub["api via proxy -> service"], 0.5) / base
    print(f"\nAPI through the service: {via_service:.2f}x single-user p50 (goal <= 1.5x)")
    print(f"tool call from the service: +{added:.2f} ms p50 over in-process (goal <= 15 ms)")
    cold = pct(hub["open a stopped project (s)"], 0.5)
    warm = pct(hub["open a running project (s)"], 0.5)
    print(f"open a stopped project: {cold:.2f} s p50 (goal <= 5 s); running: {warm:.2f} s (<= 0.5)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    asyncio.run(main(parser.parse_args().calls))
