"""Events recorded by other processes, heard through PostgreSQL ``LISTEN``.

Several servers may share one database (the hub's ecode service with several processes, a
``jupyter ecode new`` beside a server). Every recorded event is announced on
:data:`~.events.NOTIFY_CHANNEL` as ``"{run_id}:{seq}"`` (``events.append_event``). One
:class:`RunEventListener` per process holds one connection listening there; for a run that
has subscribers here and is not run here, it reads the new events once and publishes them on
the process's :class:`~.events.EventHub`, so every feed waiting on that run gets them without
reading the database itself. It reads on a second connection of its own, on the event loop:
a pooled session in a worker thread (a thread hop, a pre-ping and a transaction) doubled the
latency of the whole path (``benchmarks/bench_event_latency.py --pg``).

While the connection is down (or LISTEN is not possible at all, e.g. behind a pooler in
transaction mode) feeds poll; the listener reconnects with backoff, and wakes every feed when
it connects or drops so that nothing recorded in the gap is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from .events import NOTIFY_CHANNEL, EventHub, FeedEvent

log = logging.getLogger(__name__)

#: first and longest wait before reconnecting, in seconds (doubling in between)
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 10.0
#: an idle connection is checked this often: a peer that vanished raises no error by itself
HEALTH_CHECK_S = 30.0
#: most events read per query while catching a run up
FETCH_BATCH = 500

Fetch = Callable[[str, int, int], Awaitable[list[FeedEvent]]]

# What events.load_events reads, as one statement on the listener's own connection.
READ_EVENTS = (
    "SELECT seq, ts, type, data FROM run_events"
    " WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s"
)


def conninfo(url: URL) -> str:
    """The libpq connection string of a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class RunEventListener:
    """Hears other processes' events and publishes them on ``hub``; see the module docstring.

    ``fetch(run_id, after, limit)`` reads recorded events when the listener's own reading
    connection is not up; ``is_local(run_id)`` says whether this process runs the run (its
    events are published here already).
    """

    def __init__(
        self, url: URL, hub: EventHub, fetch: Fetch, is_local: Callable[[str], bool]
    ) -> None:
        self._conninfo = conninfo(url)
        self._hub = hub
        self._fetch = fetch
        self._is_local = is_local
        self._task: asyncio.Task[None] | None = None
        self._reader: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        # Per run being caught up: the lowest and highest seq announced and not yet published.
        self._wanted: dict[str, tuple[int, int]] = {}
        self._catching_up: dict[str, asyncio.Task[None]] = {}
        #: True while LISTEN is in place (feeds may then stop polling)
        self.connected = False
        #: the listening connection's server process (tests end it to test reconnection)
        self.backend_pid: int | None = None
        #: set each time a connection starts listening
        self.listening = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen_forever())

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._catching_up.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None

    async def _listen_forever(self) -> None:
        delay = RECONNECT_MIN_S
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=10
                ) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.backend_pid = conn.info.backend_pid
                    await self._open_reader()
                    # Events committed before LISTEN took effect were announced to nobody:
                    # every feed re-reads the database once, then relies on notifications.
                    self._set_connected(True)
                    delay = RECONNECT_MIN_S
                    while True:
                        async for note in conn.notifies(timeout=HEALTH_CHECK_S):
                            self._on_notify(note.payload)
                        await conn.execute("SELECT 1")
                        if self._reader is None or self._reader.broken:
                            await self._open_reader()
            except asyncio.CancelledError:
                self._set_connected(False)
                await self._close_reader()
                raise
            except Exception as exc:
                if self.connected:
                    log.warning("listening for run events stopped (%s); feeds poll until back", exc)
                else:
                    log.debug("cannot listen for run events (%s); retrying in %.1fs", exc, delay)
            self._set_connected(False)
            await self._close_reader()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _open_reader(self) -> None:
        await self._close_reader()
        try:
            self._reader = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=10
            )
        except psycopg.Error as exc:
            log.debug("no reading connection for run events (%s): reading through the pool", exc)

    async def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(psycopg.Error):
                await reader.close()

    async def _read(self, run_id: str, after: int) -> list[FeedEvent]:
        reader = self._reader
        if reader is None or reader.broken:
            return await self._fetch(run_id, after, FETCH_BATCH)
        cursor = await reader.execute(READ_EVENTS, (run_id, after, FETCH_BATCH))
        events = []
        for seq, ts, type_, data in await cursor.fetchall():
            # As db.models.UTCDateTime reads it.
            ts = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
            events.append(FeedEvent(run_id, seq, ts, type_, dict(data or {})))
        return events

    def _set_connected(self, connected: bool) -> None:
        was = self.connected
        self.connected = connected
        if connected:
            self.listening.set()
        else:
            self.listening.clear()
            self.backend_pid = None
        if connected != was:
            # Coming up: catch up on the gap. Going down: feeds switch to polling now.
            self._hub.wake()

    def _on_notify(self, payload: str) -> None:
        run_id, _, raw_seq = payload.rpartition(":")
        try:
            seq = int(raw_seq)
        except ValueError:
            log.debug("ignoring a malformed run event notification %r", payload)
            return
        if self._is_local(run_id) or not self._hub.has_subscribers(run_id):
            return
        known = self._hub.published_seq(run_id)
        if known is not None and seq <= known:
            return
        low, high = self._wanted.get(run_id, (seq, seq))
        self._wanted[run_id] = (min(low, seq), max(high, seq))
        if run_id not in self._catching_up:
            self._catching_up[run_id] = asyncio.create_task(self._catch_up(run_id))

    async def _catch_up(self, run_id: str) -> None:
        """Publish the run's announced events, one query for however many arrived meanwhile."""
        try:
            while run_id in self._wanted and self._hub.has_subscribers(run_id):
                low, high = self._wanted.pop(run_id)
                known = self._hub.published_seq(run_id)
                after = known if known is not None else low - 1
                while after < high:
                    events = await self._read(run_id, after)
                    for event in events:
                        self._hub.publish(event)
                    if not events:
                        break
                    after = events[-1].seq
        except Exception:
            log.exception("reading announced events of run %s failed", run_id)
            self._hub.wake(run_id)  # its feeds read the database themselves
        finally:
            self._wanted.pop(run_id, None)
            self._catching_up.pop(run_id, None)
