"""Event latency: from a tool result being recorded to a WebSocket client receiving it.

Starts a real ``jupyter server`` with the ecode extension in a throwaway folder, pointed at an
Anthropic loopback model server in this process. A scripted run makes many cheap tool calls
(``list_files``, several per turn) while a client follows ``WS runs/{id}/events``. For every
``tool.result`` event the latency is the client's receive time minus the event's ``ts``
(stamped by the server when the event is written, just after the tool returned): database
commit, publication, the WebSocket write and the client's read. Both clocks are this
machine's.

    python benchmarks/bench_event_latency.py [--calls 300]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test] [--events 200] [--no-local]

Prints p50/p99 of tool.result latency, and of all live events for comparison.

With ``--pg``, also the cross-process latency on PostgreSQL (a scratch database created on
that server and dropped afterwards): the run is recorded by this process (a second engine,
as another server of the deployment would) while the feed is opened on the server, which
hears of each event by LISTEN/NOTIFY, and then, as the baseline in the same run, by polling
(the same server with ``agent_listen_for_events`` off). ``--events`` events are recorded
2-20 ms apart; latency is the client's receive time minus the event's ``ts``. The floor
printed beside them is the database's part alone: a NOTIFY committed by a pooled session
(a worker thread, as events are recorded) until another connection hears it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from _common import TOKEN, free_port, pct, scratch_postgres, spawn_jupyter, wait_ready
from sqlalchemy import text
from sqlalchemy.engine import make_url
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from ecode_jupyter.agent import store
from ecode_jupyter.agent.events import EventHub, RunFeed
from ecode_jupyter.db import Database
from ecode_jupyter.testing import AnthropicLoopback, ScriptedToolCall, ScriptedTurn, text_turn

CALLS_PER_TURN = 10


def script(calls: int) -> list[ScriptedTurn]:
    turns = [
        # Gives the client time to connect before the measured calls start.
        ScriptedTurn(tool_calls=[ScriptedToolCall("run_command", {"command": "sleep 1"})])
    ]
    for _ in range(max(1, calls // CALLS_PER_TURN)):
        batch = [ScriptedToolCall("list_files", {}) for _ in range(CALLS_PER_TURN)]
        turns.append(ScriptedTurn(tool_calls=batch))
    turns.append(text_turn("Done."))
    return turns


async def main(calls: int) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="ecode-bench-events-") as raw,
        AnthropicLoopback(script(calls)) as model,
    ):
        tmp = Path(raw)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = spawn_jupyter(
            tmp,
            port,
            env={
                "ECODE_WORKSPACE_ROOT": str(tmp / "workspaces"),
                "ANTHROPIC_API_KEY": "sk-bench",
                "ANTHROPIC_BASE_URL": model.base_url,
            },
            args=["--EcodeApp.agent_max_steps=1000"],
        )
        headers = {"Authorization": f"token {TOKEN}"}
        try:
            async with httpx.AsyncClient(headers=headers, timeout=60) as http:
                await wait_ready(proc, base)
                # A template with tests: the run's own verification passes after "Done.".
                body = {"name": "bench", "template": "python-script"}
                created = await http.post(f"{base}/api/ecode/projects", json=body)
                created.raise_for_status()
                pid = created.json()["id"]
                started = await http.post(
                    f"{base}/api/ecode/projects/{pid}/runs", json={"prompt": "list files"}
                )
                started.raise_for_status()
                run_id = started.json()["id"]
            url = f"ws://127.0.0.1:{port}/api/ecode/runs/{run_id}/events?after=0"
            ws = await websocket_connect(HTTPRequest(url, headers=headers))
            connected = datetime.now(UTC)
            tool_ms: list[float] = []
            all_ms: list[float] = []
            last: dict[str, object] = {}
            while (message := await ws.read_message()) is not None:
                received = datetime.now(UTC)
                event = json.loads(message)
                last = event
                ts = datetime.fromisoformat(event["ts"])
                if ts <= connected:
                    continue  # replayed, not live
                latency = (received - ts).total_seconds() * 1000
                all_ms.append(latency)
                if event["type"] == "tool.result" and event["data"]["name"] == "list_files":
                    tool_ms.append(latency)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if last.get("type") != "run.completed" or not tool_ms:
        msg = f"the run did not complete as scripted: {last}"
        raise RuntimeError(msg)
    print(f"event latency, server write -> WebSocket client ({len(tool_ms)} tool results)")
    print(
        f"tool.result: p50 {pct(tool_ms, 0.5):6.2f} ms  p99 {pct(tool_ms, 0.99):6.2f} ms  "
        f"max {max(tool_ms):6.2f} ms"
    )
    print(
        f"all live events ({len(all_ms)}): p50 {pct(all_ms, 0.5):6.2f} ms  "
        f"p99 {pct(all_ms, 0.99):6.2f} ms"
    )


async def cross_process(url: str, events: int, *, listen: bool) -> list[float]:
    """Latencies of ``events`` events recorded here and read from a feed on a server."""
    with tempfile.TemporaryDirectory(prefix="ecode-bench-events-") as raw:
        tmp = Path(raw)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = spawn_jupyter(
            tmp,
            port,
            env={"ECODE_WORKSPACE_ROOT": str(tmp / "workspaces"), "ECODE_DATABASE_URL": url},
            args=[f"--EcodeApp.agent_listen_for_events={listen}"],
        )
        headers = {"Authorization": f"token {TOKEN}"}
        db = Database(url, pool_size=2)
        try:
            async with httpx.AsyncClient(headers=headers, timeout=60) as http:
                await wait_ready(proc, base)
                created = await http.post(f"{base}/api/ecode/projects", json={"name": "bench"})
                created.raise_for_status()
                project = created.json()

            def create(session: object) -> str:
                run = store.create_run(
                    session,  # type: ignore[arg-type]
                    project_id=project["id"],
                    user=project["owner"],
                    prompt="elsewhere",
                    provider="offline",
                    model="offline",
                    runner="bench-other-process",
                )
                run.status = store.RUNNING
                return run.id

            run_id = await db.run(create)
            feed = RunFeed(db, EventHub(), run_id, project["id"])
            url_ws = f"ws://127.0.0.1:{port}/api/ecode/runs/{run_id}/events?after=0"
            ws = await websocket_connect(HTTPRequest(url_ws, headers=headers))
            # One event both ways first: the feed is open and (when listening) LISTEN is up.
            await feed.emit("plan", {"steps": ["warm up"]})
            await ws.read_message()
            latencies: list[float] = []

            async def read() -> None:
                while (message := await ws.read_message()) is not None:
                    received = datetime.now(UTC)
                    event = json.loads(message)
                    if event["type"] == "message.delta":
                        ts = datetime.fromisoformat(event["ts"])
                        latencies.append((received - ts).total_seconds() * 1000)

            reader = asyncio.create_task(read())
            for i in range(events):
                await asyncio.sleep(random.uniform(0.002, 0.02))
                await feed.emit("message.delta", {"text": f"part {i}"})
            await feed.emit("run.completed", {}, changes={"status": "completed"})
            await asyncio.wait_for(reader, 30)
        finally:
            db.dispose()
            proc.terminate()
            proc.wait(timeout=30)
    if len(latencies) != events:
        msg = f"the feed got {len(latencies)} of {events} events"
        raise RuntimeError(msg)
    return latencies


async def notify_floor(url: str, events: int) -> list[float]:
    """The database's part: a NOTIFY committed by a pooled session, heard by another
    connection (both in this process), with the same spacing as the events."""
    import psycopg

    from ecode_jupyter.agent.listener import conninfo

    db = Database(url, pool_size=2)
    heard: list[float] = []
    try:
        async with await psycopg.AsyncConnection.connect(
            conninfo(make_url(url)), autocommit=True
        ) as conn:
            await conn.execute("LISTEN ecode_bench_floor")
            gen = conn.notifies()
            for _ in range(events):
                await asyncio.sleep(random.uniform(0.002, 0.02))
                start = time.perf_counter()
                await db.run(lambda s: s.execute(text("NOTIFY ecode_bench_floor, 'x'")))
                await anext(gen)
                heard.append((time.perf_counter() - start) * 1000)
            await gen.aclose()
    finally:
        db.dispose()
    return heard


async def main_cross_process(pg: str, events: int) -> None:
    with scratch_postgres(pg) as url:
        notify = await cross_process(url, events, listen=True)
        polling = await cross_process(url, events, listen=False)
        floor = await notify_floor(url, events)
    print(f"cross-process event latency on PostgreSQL, another process -> feed ({events} events)")
    for label, ms in (
        ("LISTEN/NOTIFY", notify),
        ("polling (baseline)", polling),
        ("bare NOTIFY (floor)", floor),
    ):
        print(f"{label:>20}: p50 {pct(ms, 0.5):7.2f} ms  p99 {pct(ms, 0.99):7.2f} ms")
    print(f"{'p50 ratio':>20}: {pct(notify, 0.5) / pct(polling, 0.5):.3f}x of polling")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--pg", help="a PostgreSQL server to measure cross-process latency on")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--no-local", action="store_true", help="only the cross-process part")
    options = parser.parse_args()
    if not options.no_local:
        asyncio.run(main(options.calls))
    if options.pg:
        asyncio.run(main_cross_process(options.pg, options.events))
