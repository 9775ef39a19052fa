"""Load: N simulated users against one real single-user server, on loopback.

    python benchmarks/bench_load.py [--users 50,100,300] [--seconds 15]
        [--runs-per 10] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

For each N, a fresh ``jupyter server`` with the ecode extension (SQLite, or a scratch
PostgreSQL database with ``--pg``) and an Anthropic loopback model in this process. Every
simulated user has a project of its own; one user in ``--runs-per`` starts an agent run on it
(one tool call, then done, then the project's own tests) and follows its feed over the
WebSocket to the end; every user meanwhile does what the Lab sidebar does, one call every
0.5-1.5 s: list projects, read its project, read the credit account, list its runs. The
server is a single-user server, so all users are its owner (rate limits off: they would
count all of them as one person).

Prints per N: API calls, their p50/p99 latency and errors; WebSocket feeds opened and
finished; runs completed; and, as the baseline measured in the same run, the same API calls
made one at a time by a single user against the same server before the load starts.

The client runs in this process, on the same two cores as the server: at the largest N the
client's own loop is part of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import TOKEN, free_port, pct, scratch_postgres, spawn_jupyter, wait_ready
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from ecode_jupyter.testing import (
    AnthropicLoopback,
    LoopbackRequest,
    ScriptedTurn,
    text_turn,
    tool_turn,
)

HEADERS = {"Authorization": f"token {TOKEN}"}
FINAL = {"completed", "failed", "cancelled", "interrupted"}


def respond(request: LoopbackRequest) -> ScriptedTurn:
    """Each run: list the files once, then say it is done."""
    if request.tool_results():
        return text_turn("Done.")
    return tool_turn("list_files", {})


@dataclass
class Tally:
    api_ms: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    api_errors: dict[str, int] = field(default_factory=dict)
    feeds_opened: int = 0
    feeds_finished: int = 0
    feed_errors: dict[str, int] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)

    def error(self, bucket: dict[str, int], what: str) -> None:
        bucket[what] = bucket.get(what, 0) + 1


async def api(
    http: httpx.AsyncClient, tally: Tally, method: str, url: str, kind: str = "", **kw: object
) -> dict:
    start = time.perf_counter()
    try:
        reply = await http.request(method, url, **kw)  # type: ignore[arg-type]
    except httpx.HTTPError as exc:
        tally.error(tally.api_errors, type(exc).__name__)
        return {}
    took = (time.perf_counter() - start) * 1000
    tally.api_ms.append(took)
    tally.by_kind.setdefault(kind or method, []).append(took)
    if reply.status_code >= 400:
        tally.error(tally.api_errors, f"HTTP {reply.status_code}")
        return {}
    return dict(reply.json())


async def follow_feed(port: int, run_id: str, tally: Tally) -> None:
    url = f"ws://127.0.0.1:{port}/api/ecode/runs/{run_id}/events?after=0"
    try:
        ws = await websocket_connect(HTTPRequest(url, headers=HEADERS, request_timeout=60))
    except Exception as exc:
        tally.error(tally.feed_errors, type(exc).__name__)
        return
    tally.feeds_opened += 1
    last: dict = {}
    while (message := await ws.read_message()) is not None:
        last = json.loads(message)
    if last.get("type", "").startswith("run."):
        tally.feeds_finished += 1
    else:
        tally.error(tally.feed_errors, "closed before the run's final event")


async def user(
    http: httpx.AsyncClient, base: str, port: int, pid: str, runs: bool, until: float, t: Tally
) -> None:
    api_base = f"{base}/api/ecode"
    feed: asyncio.Task[None] | None = None
    run_id = None
    if runs:
        started = await api(
            http, t, "POST", f"{api_base}/projects/{pid}/runs", json={"prompt": "x"}
        )
        run_id = started.get("id")
        if run_id:
            feed = asyncio.create_task(follow_feed(port, run_id, t))
    calls = {
        "GET projects": "projects",
        "GET projects/{id}": f"projects/{pid}",
        "GET billing/account": "billing/account",
        "GET projects/{id}/runs": f"projects/{pid}/runs",
    }
    kinds = list(calls)
    while time.perf_counter() < until:
        await asyncio.sleep(random.uniform(0.5, 1.5))
        kind = random.choice(kinds)
        await api(http, t, "GET", f"{api_base}/{calls[kind]}", kind)
    if feed is not None:
        try:
            await asyncio.wait_for(feed, 120)
        except TimeoutError:
            t.error(t.feed_errors, "run not finished 120 s after the load")
    if run_id:
        status = (await api(http, t, "GET", f"{api_base}/runs/{run_id}")).get("status", "?")
        t.runs[status] = t.runs.get(status, 0) + 1


async def one_level(n: int, seconds: float, runs_per: int, db_url: str | None) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="ecode-bench-load-") as raw,
        AnthropicLoopback(respond) as model,
    ):
        tmp = Path(raw)
        (tmp / "config").mkdir()
        # Every simulated user is the server's owner: per-user rate limits would count them
        # as one person.
        config = {"EcodeApp": {"rate_limits": {}}}
        (tmp / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env: dict[str, str | None] = {
            "ECODE_WORKSPACE_ROOT": str(tmp / "workspaces"),
            "ANTHROPIC_API_KEY": "sk-bench",
            "ANTHROPIC_BASE_URL": model.base_url,
        }
        if db_url:
            env["ECODE_DATABASE_URL"] = db_url
        proc = spawn_jupyter(tmp, port, env=env)
        limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
        try:
            async with httpx.AsyncClient(headers=HEADERS, timeout=60, limits=limits) as http:
                await wait_ready(proc, base)
                setup = Tally()
                pids = []
                for i in range(n):
                    # A template with tests, so a run's own verification can pass.
                    body = {"name": f"user {i}", "template": "python-script"}
                    created = await api(
                        http, setup, "POST", f"{base}/api/ecode/projects", json=body
                    )
                    pids.append(created["id"])
                # Baseline: the same calls, one at a time, nothing else running.
                quiet = Tally()
                for i in range(100):
                    pid = pids[i % n]
                    for path in ("projects", f"projects/{pid}", "billing/account"):
                        await api(http, quiet, "GET", f"{base}/api/ecode/{path}")
                loaded = Tally()
                until = time.perf_counter() + seconds
                await asyncio.gather(
                    *(
                        user(http, base, port, pid, i % runs_per == 0, until, loaded)
                        for i, pid in enumerate(pids)
                    )
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ms = loaded.api_ms or [float("nan")]
    print(
        f"N={n:<5} API calls {len(loaded.api_ms):>6}  p50 {pct(ms, 0.5):7.1f} ms  "
        f"p99 {pct(ms, 0.99):8.1f} ms  errors {sum(loaded.api_errors.values())} "
        f"{loaded.api_errors or ''}"
    )
    print(
        f"        baseline (one user, quiet): p50 {pct(quiet.api_ms, 0.5):5.1f} ms  "
        f"p99 {pct(quiet.api_ms, 0.99):6.1f} ms"
    )
    for kind, samples in sorted(loaded.by_kind.items()):
        print(
            f"        {kind:<24} {len(samples):>5}  p50 {pct(samples, 0.5):7.1f} ms  "
            f"p99 {pct(samples, 0.99):8.1f} ms"
        )
    print(
        f"        feeds opened {loaded.feeds_opened}, finished {loaded.feeds_finished}, "
        f"errors {loaded.feed_errors or 0}; runs {loaded.runs}"
    )


async def main(levels: list[int], seconds: float, runs_per: int, pg: str | None) -> None:
    database = "PostgreSQL" if pg else "SQLite"
    print(f"load on one single-user server, {seconds:g} s per level ({database})")
    for n in levels:
        if not pg:
            await one_level(n, seconds, runs_per, None)
            continue
        with scratch_postgres(pg) as url:
            await one_level(n, seconds, runs_per, url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="50,100,300", help="comma-separated levels of N")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--runs-per", type=int, default=10, help="one user in this many runs")
    parser.add_argument("--pg", help="a PostgreSQL server to create a scratch database on")
    options = parser.parse_args()
    levels = [int(v) for v in options.users.split(",")]
    asyncio.run(main(levels, options.seconds, options.runs_per, options.pg))
