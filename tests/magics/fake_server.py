"""A scripted stand-in for the ecode REST + WebSocket API, served by tornado in a thread.

It exists for what a real server cannot be made to do on cue: drop the progress feed in the
middle (cleanly or by cutting the TCP connection), hold a run open until it is cancelled, or
refuse with a close code. It serves only the endpoints the magics use, with the real shapes.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tornado import web, websocket
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

TOKEN = "fake-token"
TERMINAL = {"run.completed", "run.failed", "run.cancelled", "run.interrupted"}


def event(seq: int, type_: str, run_id: str = "run1", **data: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "run_id": run_id,
        "ts": f"2025-01-01T00:00:{seq:02d}+00:00",
        "type": type_,
        "data": data,
    }


@dataclass
class FakeRun:
    id: str
    project_id: str
    prompt: str
    events: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    #: per connection, in order: how many events to send before dropping ("close" sends a
    #: close frame with 1001, "cut" closes the TCP connection, an int code closes with it)
    drops: list[tuple[int, str | int]] = field(default_factory=list)
    cancel_requests: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project_id": self.project_id,
            "prompt": self.prompt,
            "status": self.status,
            "provider": "offline",
            "model": "offline",
            "reason": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
            "cost_micros": 0,
            "steps": 1,
            "summary": {},
            "last_seq": len(self.events),
            "created_at": "2025-01-01T00:00:00+00:00",
        }


class FakeState:
    def __init__(self) -> None:
        self.runs: dict[str, FakeRun] = {}
        self.projects: list[dict[str, Any]] = []
        self.connections: list[int] = []  # the `after` of each feed connection, in order
        self.script: list[dict[str, Any]] = []  # events a newly started run gets
        self.changed: asyncio.Condition | None = None
        self.fail_create: tuple[int, str, str] | None = None  # status, code, message

    def new_run(self, project_id: str, prompt: str) -> FakeRun:
        run_id = f"run{len(self.runs) + 1}"
        run = FakeRun(run_id, project_id, prompt)
        run.events = [{**e, "run_id": run_id} for e in self.script]
        if run.events and run.events[-1]["type"] in TERMINAL:
            run.status = run.events[-1]["type"].removeprefix("run.")
        self.runs[run_id] = run
        return run

    async def append(self, run: FakeRun, type_: str, **data: Any) -> None:
        run.events.append(event(len(run.events) + 1, type_, run.id, **data))
        if type_ in TERMINAL:
            run.status = type_.removeprefix("run.")
        assert self.changed is not None
        async with self.changed:
            self.changed.notify_all()


class _Base(web.RequestHandler):
    def initialize(self, state: FakeState) -> None:
        self.state = state

    def prepare(self) -> None:
        if self.request.headers.get("Authorization") != f"token {TOKEN}":
            self.set_status(401)
            self.finish({"error": {"code": "not_authenticated", "message": "bad token"}})

    def body(self) -> dict[str, Any]:
        return dict(json.loads(self.request.body or b"{}"))


class Projects(_Base):
    def get(self) -> None:
        self.finish({"projects": self.state.projects})

    def post(self) -> None:
        if self.state.fail_create is not None:
            status, code, message = self.state.fail_create
            self.set_status(status)
            self.finish({"error": {"code": code, "message": message}})
            return
        body = self.body()
        pid = f"p{len(self.state.projects) + 1}"
        project = {
            "id": pid,
            "name": body["name"],
            "slug": body["name"].lower().replace(" ", "-"),
            "owner": "alice",
            "role": "owner",
            "template": None,
            "updated_at": "2025-01-01T00:00:00+00:00",
        }
        self.state.projects.append(project)
        run = self.state.new_run(pid, body.get("prompt", ""))
        self.set_status(201)
        self.finish({**project, "run": run.to_json()})


class ProjectRuns(_Base):
    def post(self, project_id: str) -> None:
        run = self.state.new_run(project_id, self.body()["prompt"])
        self.set_status(201)
        self.finish(run.to_json())


class Run(_Base):
    def get(self, run_id: str) -> None:
        self.finish(self.state.runs[run_id].to_json())


class Cancel(_Base):
    async def post(self, run_id: str) -> None:
        run = self.state.runs[run_id]
        run.cancel_requests += 1
        if run.status == "running":
            await self.state.append(
                run, "run.cancelled", reason="cancelled", message="the run was cancelled"
            )
        self.finish(run.to_json())


class Events(websocket.WebSocketHandler):
    def initialize(self, state: FakeState) -> None:
        self.state = state

    async def get(self, run_id: str) -> None:  # type: ignore[override]
        if self.request.headers.get("Authorization") != f"token {TOKEN}":
            self.set_status(401)
            self.finish({"error": {"code": "not_authenticated", "message": "bad token"}})
            return
        if run_id not in self.state.runs:
            self.set_status(404)
            self.finish({"error": {"code": "not_found", "message": "no such run"}})
            return
        await super().get(run_id)

    def open(self, run_id: str) -> None:  # type: ignore[override]
        self.run = self.state.runs[run_id]
        after = int(self.get_query_argument("after", "0"))
        index = len(self.state.connections)
        self.state.connections.append(after)
        drop = self.run.drops[index] if index < len(self.run.drops) else None
        self.task = asyncio.ensure_future(self.pump(after, drop))

    async def pump(self, after: int, drop: tuple[int, str | int] | None) -> None:
        sent = 0
        assert self.state.changed is not None
        while True:
            pending = [e for e in self.run.events if e["seq"] > after]
            if not pending:
                async with self.state.changed:
                    if not any(e["seq"] > after for e in self.run.events):
                        await self.state.changed.wait()
                continue
            for ev in pending:
                if drop is not None and sent >= drop[0]:
                    how = drop[1]
                    if how == "cut":
                        assert self.ws_connection is not None
                        self.ws_connection.stream.close()  # type: ignore[attr-defined]
                    else:
                        self.close(1001 if how == "close" else int(how), "dropped on purpose")
                    return
                await self.write_message(json.dumps(ev))
                after, sent = ev["seq"], sent + 1
                if ev["type"] in TERMINAL:
                    self.close(1000, "run finished")
                    return

    def on_close(self) -> None:
        self.task.cancel()


@dataclass
class FakeServer:
    url: str
    state: FakeState
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a coroutine function on the server's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), self.loop).result(10)


@contextmanager
def fake_ecode_server() -> Iterator[FakeServer]:
    state = FakeState()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def start() -> None:
            state.changed = asyncio.Condition()
            kw = {"state": state}
            app = web.Application(
                [
                    (r"/api/ecode/projects", Projects, kw),
                    (r"/api/ecode/projects/([^/]+)/runs", ProjectRuns, kw),
                    (r"/api/ecode/runs/([^/]+)", Run, kw),
                    (r"/api/ecode/runs/([^/]+)/cancel", Cancel, kw),
                    (r"/api/ecode/runs/([^/]+)/events", Events, kw),
                ]
            )
            sockets = bind_sockets(0, "127.0.0.1")
            server = HTTPServer(app)
            server.add_sockets(sockets)
            holder["server"] = server
            holder["port"] = sockets[0].getsockname()[1]

        loop.run_until_complete(start())
        holder["loop"] = loop
        ready.set()
        loop.run_forever()
        loop.run_until_complete(holder["server"].close_all_connections())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    loop = holder["loop"]
    try:
        yield FakeServer(f"http://127.0.0.1:{holder['port']}/", state, loop)
    finally:

        def stop() -> None:
            holder["server"].stop()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.stop()

        loop.call_soon_threadsafe(stop)
        thread.join(10)
