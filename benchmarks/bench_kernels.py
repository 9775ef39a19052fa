"""Project kernels: cold start in the sandbox, and an execute round trip, beside baselines.

    python benchmarks/bench_kernels.py [--starts 10] [--calls 200]

One real Jupyter server with the ecode extension (sandbox on), a project in it, and:

- **cold start**: ``POST /api/kernels`` until the first ``execute_reply`` over the kernel's
  WebSocket, for the stock ``python3`` kernelspec (the baseline: LocalProvisioner, no
  sandbox) and for ``ecode-python`` (the ecode provisioner: project lookup, clean
  environment, bubblewrap, cgroup, IPC sockets), alternating so both see the same machine.
  Goal: the sandbox adds at most 50 ms.
- **round trip**: ``execute_request`` of ``pass`` until its ``execute_reply``, over the
  server's kernel WebSocket (what Lab does, with the server's ``TCP_NODELAY``) and with a
  direct ZMQ client on the same kernel (the floor). Goal: WebSocket p50 at most 5 ms.

- **warm pool**: the project opened (``POST projects/{id}/kernels/warm``), then
  ``POST /api/kernels`` for the project's folder claims the pooled kernel, until its first
  ``execute_reply``. Goal: p50 at most 50 ms, 10x faster than cold.

- **run_command** with and without the sandbox (``bench_sandbox.py``'s measurement, run here
  too so all four goals print in one run). Goal: the sandbox adds at most 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import bench_sandbox
from _common import TOKEN, free_port, pct, spawn_jupyter, wait_ready
from jupyter_client.asynchronous.client import AsyncKernelClient
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

START_GOAL_MS = 50.0
CLAIM_GOAL_MS = 50.0
ROUND_TRIP_GOAL_MS = 5.0
HEADERS = {"Authorization": f"token {TOKEN}"}


async def _api(base: str, method: str, path: str, body: Any = None) -> Any:
    request = HTTPRequest(
        f"{base}{path}",
        method=method,
        headers=HEADERS,
        body=json.dumps(body) if body is not None else (b"" if method == "POST" else None),
        allow_nonstandard_methods=True,
        request_timeout=120,
    )
    answer = await AsyncHTTPClient().fetch(request)
    return json.loads(answer.body) if answer.body else None


class Channel:
    """The kernel WebSocket as Lab uses it (the JSON protocol)."""

    def __init__(self, conn: WebSocketClientConnection, session: str) -> None:
        self.conn = conn
        self.session = session

    @classmethod
    async def open(cls, base: str, kernel_id: str) -> Channel:
        session = uuid.uuid4().hex
        url = f"{base.replace('http', 'ws', 1)}api/kernels/{kernel_id}/channels"
        conn = await websocket_connect(HTTPRequest(f"{url}?session_id={session}", headers=HEADERS))
        # Browsers set TCP_NODELAY on their side; so does this client.
        stream = getattr(conn, "stream", None)
        if stream is not None:
            stream.set_nodelay(True)
        return cls(conn, session)

    async def execute(self, code: str) -> None:
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": self.session,
            "username": "bench",
            "version": "5.3",
            "date": "",
        }
        content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        await self.conn.write_message(json.dumps({**message, "channel": "shell", "buffers": []}))
        while True:
            raw = await self.conn.read_message()
            if raw is None:
                msg = "the kernel WebSocket closed"
                raise RuntimeError(msg)
            reply = json.loads(raw)
            if (
                reply.get("msg_type") == "execute_reply"
                and reply["parent_header"].get("msg_id") == msg_id
            ):
                return

    def close(self) -> None:
        self.conn.close()


async def cold_start(base: str, spec: str, path: str) -> float:
    started = time.perf_counter()
    kernel = await _api(base, "POST", "api/kernels", {"name": spec, "path": path})
    channel = await Channel.open(base, kernel["id"])
    await channel.execute("pass")
    elapsed = (time.perf_counter() - started) * 1000
    channel.close()
    await _api(base, "DELETE", f"api/kernels/{kernel['id']}")
    return elapsed


async def claim_from_pool(base: str, project_id: str, path: str) -> float:
    await _api(base, "POST", f"api/ecode/projects/{project_id}/kernels/warm")
    for _ in range(600):  # until the pooled kernel is up (not timed)
        listed = await _api(base, "GET", f"api/ecode/projects/{project_id}/kernels")
        if any(k["pooled"] for k in listed["kernels"]):
            break
        await asyncio.sleep(0.05)
    else:
        msg = "the pool did not fill"
        raise RuntimeError(msg)
    started = time.perf_counter()
    kernel = await _api(base, "POST", "api/kernels", {"name": "ecode-python", "path": path})
    channel = await Channel.open(base, kernel["id"])
    await channel.execute("pass")
    elapsed = (time.perf_counter() - started) * 1000
    channel.close()
    await _api(base, "DELETE", f"api/kernels/{kernel['id']}")
    return elapsed


def _connection_file(runtime: Path, kernel_id: str) -> Path:
    # An ecode kernel's connection file lives in its private folder (kernels/host.py).
    found = list(Path(tempfile.gettempdir()).glob(f"ecode-kernels-*/{kernel_id[:12]}/*.json"))
    return found[0] if found else runtime / f"kernel-{kernel_id}.json"


async def round_trips(base: str, runtime: Path, path: str, calls: int) -> None:
    kernel = await _api(base, "POST", "api/kernels", {"name": "ecode-python", "path": path})
    channel = await Channel.open(base, kernel["id"])
    client = AsyncKernelClient()
    client.load_connection_file(str(_connection_file(runtime, kernel["id"])))
    client.start_channels()
    await client.wait_for_ready(timeout=60)
    over_ws: list[float] = []
    over_zmq: list[float] = []
    for _ in range(10):  # warm both paths
        await channel.execute("pass")
        await client.execute("pass", reply=True)
    for _ in range(calls):
        started = time.perf_counter()
        await channel.execute("pass")
        over_ws.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await client.execute("pass", reply=True)
        over_zmq.append((time.perf_counter() - started) * 1000)
    client.stop_channels()
    channel.close()
    await _api(base, "DELETE", f"api/kernels/{kernel['id']}")
    ws50, zmq50 = pct(over_ws, 0.5), pct(over_zmq, 0.5)
    verdict = "ok" if ws50 <= ROUND_TRIP_GOAL_MS else "OVER GOAL"
    print(
        f"execute round trip ({calls} calls): direct ZMQ p50 {zmq50:.2f} ms p99 "
        f"{pct(over_zmq, 0.99):.2f} | server WebSocket p50 {ws50:.2f} ms p99 "
        f"{pct(over_ws, 0.99):.2f} (x{ws50 / zmq50:.2f}; goal p50 <= {ROUND_TRIP_GOAL_MS:g} ms: "
        f"{verdict})"
    )


async def main(starts: int, calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "root"
        (root / "ecode-projects").mkdir(parents=True)
        port = free_port()
        proc = spawn_jupyter(
            tmp,
            port,
            root=root,
            args=[
                f"--EcodeApp.workspace_root={root / 'ecode-projects'}",
                "--EcodeApp.sandbox=required",
            ],
        )
        base = f"http://127.0.0.1:{port}/"
        try:
            await wait_ready(proc, base)
            project = await _api(base, "POST", "api/ecode/projects", {"name": "bench"})
            path = f"ecode-projects/{project['id']}"
            plain: list[float] = []
            boxed: list[float] = []
            for _ in range(2):  # warm the page cache, the kernelspec lookups, the probe
                await cold_start(base, "python3", path)
                await cold_start(base, "ecode-python", path)
            for _ in range(starts):
                plain.append(await cold_start(base, "python3", path))
                boxed.append(await cold_start(base, "ecode-python", path))
            p50, s50 = pct(plain, 0.5), pct(boxed, 0.5)
            verdict = "ok" if s50 - p50 <= START_GOAL_MS else "OVER GOAL"
            print(
                f"cold start to first execute ({starts} each): python3 p50 {p50:.0f} ms | "
                f"ecode-python (sandboxed) p50 {s50:.0f} ms | adds {s50 - p50:+.0f} ms "
                f"(goal <= +{START_GOAL_MS:g} ms: {verdict})"
            )
            claims: list[float] = []
            for _ in range(starts):
                claims.append(await claim_from_pool(base, project["id"], path))
            c50 = pct(claims, 0.5)
            verdict = "ok" if c50 <= CLAIM_GOAL_MS and c50 * 10 <= s50 else "OVER GOAL"
            print(
                f"warm pool, claim to first execute ({starts}): p50 {c50:.1f} ms p90 "
                f"{pct(claims, 0.9):.1f} | {s50 / c50:.0f}x faster than a sandboxed cold start "
                f"(goal p50 <= {CLAIM_GOAL_MS:g} ms and >= 10x: {verdict})"
            )
            await round_trips(base, tmp / "runtime", path, calls)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        # The server is stopped: run_command's figures do not share the machine with it.
        await bench_sandbox.main(max(20, starts * 3))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200)
    options = parser.parse_args()
    asyncio.run(main(options.starts, options.calls))
