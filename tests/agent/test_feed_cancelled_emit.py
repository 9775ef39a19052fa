"""An event written while its emitter is cancelled is still published.

A command's output ticker is cancelled the moment the command ends; when that happened while
its event was being written in the database thread, the row was committed but the event never
reached live feeds or the Jupyter event bus (seen once in CI on PostgreSQL: a live listener
missed one command.output). Attacked here by cancelling an emit in the middle of its write.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ecode_jupyter.agent import store
from ecode_jupyter.agent.events import EventHub, RunFeed
from ecode_jupyter.db import Database


async def test_an_emit_cancelled_during_its_write_is_still_published(
    ecode_api: Any, ecode_database_url: str
) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "ticker"})).body["id"]
    db = Database(ecode_database_url, pool_size=2)
    try:

        def create(session: Any) -> str:
            run = store.create_run(
                session,
                project_id=pid,
                user="alice",
                prompt="p",
                provider="offline",
                model="offline",
                runner="test",
            )
            return str(run.id)

        run_id = await db.run(create)
        hub = EventHub()
        feed = RunFeed(db, hub, run_id, pid)
        writing = threading.Event()
        release = threading.Event()
        original = db.run

        async def slow_run(fn: Any) -> Any:
            def held(session: Any) -> Any:
                writing.set()
                release.wait(10)  # the write is under way when the emitter is cancelled
                return fn(session)

            return await original(held)

        db.run = slow_run  # type: ignore[method-assign]
        with hub.subscribe(run_id) as sub:
            task = asyncio.create_task(feed.emit("command.output", {"text": "last chunk"}))
            await asyncio.to_thread(writing.wait, 10)
            task.cancel()
            release.set()
            event = await sub.get(timeout=10)
        assert event is not None and event.type == "command.output"
        assert event.data["text"] == "last chunk"
    finally:
        db.dispose()
