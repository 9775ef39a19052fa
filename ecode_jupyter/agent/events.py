"""The progress feed of agent runs: persisted, numbered per run, published live.

Every event is ``{seq, run_id, ts, type, data}``. :class:`RunFeed` records one run's events:
it takes the next ``seq`` and inserts the row in one transaction (``UPDATE runs SET last_seq =
last_seq + 1 ... RETURNING``, atomic on SQLite and PostgreSQL; the ``(run_id, seq)`` primary key
is the backstop), then hands the committed event to the in-process :class:`EventHub` (the
WebSockets and the CLI listen there) and to jupyter_server's event bus.

Publishing after the commit is what makes replay-then-live exact: a listener subscribes first
and then reads the database, so every event is in the rows it read, in its queue, or both —
and duplicates are told apart by ``seq``.

Other processes sharing a PostgreSQL database hear of an event by ``NOTIFY`` (channel
:data:`NOTIFY_CHANNEL`, payload ``"{run_id}:{seq}"``, never the content), sent by the same
statement that takes the seq, so it is delivered when, and only if, the event commits;
``listener.py`` turns it back into a publication on that process's hub.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, func, select, update
from sqlalchemy.orm import Session

from ..db import Database
from ..db.models import Run, RunEvent, utcnow
from ..exceptions import NotFound
from .redaction import Redactor

log = logging.getLogger(__name__)

RUN_STARTED = "run.started"
PLAN = "plan"
STEP_STARTED = "step.started"
MESSAGE_DELTA = "message.delta"
TOOL_CALL = "tool.call"
TOOL_RESULT = "tool.result"
FILE_CHANGED = "file.changed"
COMMAND_OUTPUT = "command.output"
USAGE = "usage"
#: the suite's own check of the project (tests, a notebook run) with its command and exit code
VERIFY_RESULT = "verify.result"
#: a run waits for a person: a tool call the project's policy asks about, or a plan
APPROVAL_REQUESTED = "approval.requested"
#: the answer (allow, deny, always, or expired), recorded by the run that waited
APPROVAL_RESOLVED = "approval.resolved"
RUN_COMPLETED = "run.completed"
RUN_FAILED = "run.failed"
RUN_CANCELLED = "run.cancelled"
RUN_INTERRUPTED = "run.interrupted"

EVENT_TYPES = frozenset(
    {
        RUN_STARTED,
        PLAN,
        STEP_STARTED,
        MESSAGE_DELTA,
        TOOL_CALL,
        TOOL_RESULT,
        FILE_CHANGED,
        COMMAND_OUTPUT,
        USAGE,
        VERIFY_RESULT,
        APPROVAL_REQUESTED,
        APPROVAL_RESOLVED,
        RUN_COMPLETED,
        RUN_FAILED,
        RUN_CANCELLED,
        RUN_INTERRUPTED,
    }
)
#: the last event of a run's feed; nothing follows one of these
TERMINAL_TYPES = frozenset({RUN_COMPLETED, RUN_FAILED, RUN_CANCELLED, RUN_INTERRUPTED})

#: PostgreSQL channel on which every recorded event is announced as ``"{run_id}:{seq}"``
NOTIFY_CHANNEL = "ecode_run_events"

SCHEMA_ID = "https://events.jupyter.org/ecode_jupyter/run_event/v1"
SCHEMA_PATH = Path(__file__).parent / "event_schemas" / "run_event" / "v1.yaml"


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One recorded event of a run."""

    run_id: str
    seq: int
    ts: datetime
    type: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "run_id": self.run_id,
            "ts": self.ts.isoformat(),
            "type": self.type,
            "data": self.data,
        }

    @classmethod
    def from_row(cls, row: RunEvent) -> FeedEvent:
        return cls(row.run_id, row.seq, row.ts, row.type, dict(row.data or {}))


class Subscription:
    """Events of one run (or of every run) as they are published; see :meth:`EventHub.subscribe`."""

    def __init__(self, hub: EventHub, run_id: str | None) -> None:
        self._hub = hub
        self.run_id = run_id
        # None is a wake-up: something may have been recorded that was not published here.
        self.queue: asyncio.Queue[FeedEvent | None] = asyncio.Queue()

    async def get(self, timeout: float | None = None) -> FeedEvent | None:
        """The next event, or None after ``timeout`` seconds without one or when woken
        (:meth:`EventHub.wake`): either way the caller should re-read the database."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._hub._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EventHub:
    """In-process fan-out of committed events to subscribers. Lives on the server's loop."""

    def __init__(self) -> None:
        self._subs: dict[str | None, set[Subscription]] = defaultdict(set)
        # The highest seq published per run that has subscribers (listener.py skips what
        # this process already published).
        self._published: dict[str, int] = {}

    def subscribe(self, run_id: str | None) -> Subscription:
        """Subscribe to one run's events, or to every run's with ``run_id=None``."""
        sub = Subscription(self, run_id)
        self._subs[run_id].add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.run_id]
                if sub.run_id is not None:
                    self._published.pop(sub.run_id, None)

    def has_subscribers(self, run_id: str) -> bool:
        return bool(self._subs.get(run_id) or self._subs.get(None))

    def published_seq(self, run_id: str) -> int | None:
        """The highest seq of ``run_id`` published while it had subscribers, if any."""
        return self._published.get(run_id)

    def publish(self, event: FeedEvent) -> None:
        if event.run_id in self._subs:
            known = self._published.get(event.run_id, 0)
            self._published[event.run_id] = max(known, event.seq)
        for key in (event.run_id, None):
            for sub in tuple(self._subs.get(key, ())):
                sub.queue.put_nowait(event)

    def wake(self, run_id: str | None = None) -> None:
        """Make subscribers of ``run_id`` (None: all) re-read the database now."""
        for key, subs in tuple(self._subs.items()):
            if run_id is None or key in (run_id, None):
                for sub in tuple(subs):
                    sub.queue.put_nowait(None)


class JupyterEventBus:
    """Emits run events on jupyter_server's event bus (``serverapp.event_logger``)."""

    def __init__(self, event_logger: Any) -> None:
        self._logger = event_logger
        event_logger.register_event_schema(SCHEMA_PATH)

    def emit(self, event: FeedEvent, project_id: str) -> None:
        try:
            self._logger.emit(
                schema_id=SCHEMA_ID,
                data={
                    "run_id": event.run_id,
                    "project_id": project_id,
                    "seq": event.seq,
                    "type": event.type,
                    "ts": event.ts.isoformat(),
                    "data": event.data,
                },
            )
        except Exception:  # a broken listener or schema must not stop the run
            log.exception(
                "emitting run event %s/%s on the event bus failed", event.run_id, event.seq
            )


def _json_safe(data: Mapping[str, Any]) -> dict[str, Any]:
    # Round-trip through JSON so what subscribers get is exactly what a replay reads back.
    return dict(json.loads(json.dumps(data, default=str)))


def append_event(
    session: Session,
    run_id: str,
    type_: str,
    data: dict[str, Any],
    changes: Mapping[str, Any] | None = None,
) -> FeedEvent:
    """Insert the run's next event (and apply ``changes`` to the run row) in ``session``."""
    values: dict[str, Any] = {"last_seq": Run.last_seq + 1}
    if changes:
        values.update(changes)
    stmt = update(Run).where(Run.id == run_id).values(**values).returning(Run.last_seq)
    if session.get_bind().dialect.name == "postgresql":
        # Announce the event to other processes in the statement that numbers it: no extra
        # round trip, and PostgreSQL delivers a NOTIFY only when its transaction commits.
        payload = Run.id + ":" + cast(Run.last_seq, String)
        stmt = stmt.returning(func.pg_notify(NOTIFY_CHANNEL, payload))
    seq = session.execute(stmt).scalar_one_or_none()
    if seq is None:
        msg = "no such run"
        raise NotFound(msg)
    row = RunEvent(run_id=run_id, seq=int(seq), ts=utcnow(), type=type_, data=data)
    session.add(row)
    session.flush()
    return FeedEvent(run_id, row.seq, row.ts, type_, data)


def load_events(session: Session, run_id: str, after: int, limit: int) -> list[FeedEvent]:
    rows = session.scalars(
        select(RunEvent)
        .where(RunEvent.run_id == run_id, RunEvent.seq > after)
        .order_by(RunEvent.seq)
        .limit(limit)
    )
    return [FeedEvent.from_row(row) for row in rows]


class RunFeed:
    """Records the events of one run, in order, redacted, and publishes them once committed."""

    def __init__(
        self,
        db: Database,
        hub: EventHub,
        run_id: str,
        project_id: str,
        *,
        redactor: Redactor | None = None,
        bus: JupyterEventBus | None = None,
    ) -> None:
        self.db = db
        self.hub = hub
        self.run_id = run_id
        self.project_id = project_id
        self.redactor = redactor or Redactor()
        self.bus = bus
        #: set once the run's final event is recorded; nothing is recorded after it
        self.finished = False
        # Serializes seq allocation and publication, so subscribers see seq order.
        self._lock = asyncio.Lock()

    async def emit(
        self, type_: str, data: dict[str, Any], *, changes: Mapping[str, Any] | None = None
    ) -> FeedEvent | None:
        """Record an event; ``changes`` updates run columns in the same transaction.

        Returns None (and records nothing) once the run's final event is recorded.
        """
        recorded = await self.emit_many([(type_, data, changes)])
        return recorded[0] if recorded else None

    async def emit_many(
        self, batch: list[tuple[str, dict[str, Any], Mapping[str, Any] | None]]
    ) -> list[FeedEvent]:
        """Record several events (type, data, run changes) in one transaction, in order."""
        for type_, _data, _changes in batch:
            if type_ not in EVENT_TYPES:
                msg = f"unknown run event type {type_!r}"
                raise ValueError(msg)
        clean = [(t, _json_safe(self.redactor.data(d)), c) for t, d, c in batch]

        def append_all(session: Session) -> list[FeedEvent]:
            return [append_event(session, self.run_id, t, d, c) for t, d, c in clean]

        async def record() -> list[FeedEvent]:
            async with self._lock:
                if self.finished:
                    log.debug("run %s: events after the final event not recorded", self.run_id)
                    return []
                events = await self.db.run(append_all)
                for event in events:
                    if event.terminal:
                        self.finished = True
                    self.hub.publish(event)
            if self.bus is not None:
                for event in events:
                    self.bus.emit(event, self.project_id)
            return events

        # Once written, an event must also be published, even when the emitting task is
        # cancelled meanwhile (a command's output ticker is, the moment the command ends): a
        # write committed in the database thread but cut off before publishing left live
        # feeds and the event bus with a gap that only a replay filled.
        return await asyncio.shield(record())
