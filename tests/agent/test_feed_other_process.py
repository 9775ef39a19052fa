"""A feed of a run that another process records: heard by LISTEN/NOTIFY on PostgreSQL,
polled otherwise.

The other process is a second engine on the same database writing through the same
``RunFeed`` a server uses, with its own event hub: nothing it records is published to the
server under test except through the database. The feed's polls are set to an hour where a
test must show that an event arrived without one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from ecode_jupyter.agent import store
from ecode_jupyter.agent.events import EventHub, RunFeed
from ecode_jupyter.db import Database
from ecode_jupyter.handlers import runs as runs_handlers

from .feed import open_feed, read_feed

NO_POLL_S = 3600.0

# A lost event would hang a feed: fail in a minute rather than the suite's five.
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def other_process(ecode_database_url: str) -> Iterator[Database]:
    """A second engine on the test database: what another server process would hold."""
    db = Database(ecode_database_url, pool_size=2)
    yield db
    db.dispose()


async def remote_run(ecode_api: Any, db: Database) -> RunFeed:
    """A running run of a new project of alice's, recorded by ``db``'s process."""
    pid = (await ecode_api("POST", "projects", body={"name": "elsewhere"})).body["id"]

    def create(session: Any) -> str:
        run = store.create_run(
            session,
            project_id=pid,
            user="alice",
            prompt="run elsewhere",
            provider="offline",
            model="offline",
            runner="another-server",
        )
        run.status = store.RUNNING
        return run.id

    run_id = await db.run(create)
    return RunFeed(db, EventHub(), run_id, pid)


def agent_of(ecode_app: Any) -> Any:
    return ecode_app.ecode.extras["agent"]


async def listening(ecode_app: Any) -> Any:
    """The server's listener, once it listens."""
    agent = agent_of(ecode_app)
    # What the server does once it is up (pytest-jupyter's server never gets there).
    await agent.start()
    await agent.listener.listening.wait()
    return agent.listener


def no_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs_handlers, "LOCAL_POLL_S", NO_POLL_S)
    monkeypatch.setattr(runs_handlers, "REMOTE_POLL_S", NO_POLL_S)


async def test_another_process_events_reach_a_feed_by_notify(
    ecode_api: Any,
    ecode_app: Any,
    ecode_postgres_url: str | None,
    other_process: Database,
    jp_http_port: int,
    jp_base_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if ecode_postgres_url is None:
        pytest.skip("LISTEN/NOTIFY needs PostgreSQL (ECODE_TEST_DATABASE_URL)")
    no_polls(monkeypatch)
    await listening(ecode_app)
    feed = await remote_run(ecode_api, other_process)
    await feed.emit("plan", {"steps": ["one"]})
    ws = await open_feed(jp_http_port, jp_base_url, feed.run_id)
    first = await read_feed(ws, limit=1)
    for i in range(20):
        await feed.emit("message.delta", {"text": f"part {i}"})
    await feed.emit("run.completed", {"summary": "done"}, changes={"status": "completed"})
    rest = await read_feed(ws)
    got = first + rest
    # Every event once, in order, with what the other process recorded; then the feed closes.
    assert [e["seq"] for e in got] == list(range(1, 23))
    assert [e["data"].get("text") for e in got[1:21]] == [f"part {i}" for i in range(20)]
    assert got[-1]["type"] == "run.completed"


async def test_the_feed_keeps_going_when_the_listening_connection_is_killed(
    ecode_api: Any,
    ecode_app: Any,
    ecode_postgres_url: str | None,
    other_process: Database,
    jp_http_port: int,
    jp_base_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if ecode_postgres_url is None:
        pytest.skip("LISTEN/NOTIFY needs PostgreSQL (ECODE_TEST_DATABASE_URL)")
    no_polls(monkeypatch)
    listener = await listening(ecode_app)
    feed = await remote_run(ecode_api, other_process)
    ws = await open_feed(jp_http_port, jp_base_url, feed.run_id)
    await feed.emit("plan", {"steps": ["one"]})
    assert [e["seq"] for e in await read_feed(ws, limit=1)] == [1]

    killed = listener.backend_pid
    await other_process.run(
        lambda s: s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed})
    )
    # Recorded while the listener is down or coming back: the reconnection catches it up.
    await feed.emit("message.delta", {"text": "in the gap"})
    while listener.backend_pid in (None, killed):
        await asyncio.sleep(0.01)
    await feed.emit("message.delta", {"text": "after"})
    await feed.emit("run.completed", {"summary": "done"}, changes={"status": "completed"})
    got = await read_feed(ws)
    assert [e["seq"] for e in got] == [2, 3, 4]
    assert [e["data"].get("text") for e in got[:2]] == ["in the gap", "after"]
    assert got[-1]["type"] == "run.completed"


@pytest.fixture
def ecode_extra_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    listen = getattr(request, "param", True)
    return {"EcodeApp": {"agent_listen_for_events": listen, "agent_offline_installs": False}}


@pytest.mark.parametrize("ecode_extra_config", [False], indirect=True)
async def test_without_listening_a_feed_polls_for_another_process_events(
    ecode_api: Any,
    ecode_app: Any,
    other_process: Database,
    jp_http_port: int,
    jp_base_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SQLite, or PostgreSQL with listening off: the feed reads the database now and then.
    monkeypatch.setattr(runs_handlers, "REMOTE_POLL_S", 0.05)
    assert agent_of(ecode_app).listener is None
    feed = await remote_run(ecode_api, other_process)
    ws = await open_feed(jp_http_port, jp_base_url, feed.run_id)
    await feed.emit("plan", {"steps": ["one"]})
    await feed.emit("run.completed", {"summary": "done"}, changes={"status": "completed"})
    got = await read_feed(ws)
    assert [(e["seq"], e["type"]) for e in got] == [(1, "plan"), (2, "run.completed")]
