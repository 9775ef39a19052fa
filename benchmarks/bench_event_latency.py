"""Event latency: from a tool result being recorded to a WebSocket client receiving it.

Starts a real ``jupyter server`` with the ecode extension in a throwaway folder, pointed at an
Anthropic loopback model server in this process. A scripted run makes many cheap tool calls
(``list_files``, several per turn) while a client follows ``WS runs/{id}/events``. For every
``tool.result`` event the latency is the client's receive time minus the event's ``ts``
(stamped by the server when the event is written, just after the tool returned): database
commit, publication, the WebSocket write and the client's read. Both clocks are this
machine's.

    python benchmarks/bench_event_latency.py [--calls 300]

Prints p50/p99 of tool.result latency, and of all live events for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
from _common import TOKEN, free_port, pct, spawn_jupyter, wait_ready
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

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
                created = await http.post(f"{base}/api/ecode/projects", json={"name": "bench"})
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    asyncio.run(main(parser.parse_args().calls))
