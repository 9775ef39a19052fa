"""Per-user rate limits: how many runs, model calls and tool calls one user may start.

    RateLimiter            the limits per kind (``c.EcodeApp.rate_limits``) and the admin rule
     └── CounterStore      where the counts live, shared by every process of a deployment
          ├── RedisCounters      INCR + EXPIRE in one MULTI/EXEC (``c.EcodeApp.redis_url``)
          └── DatabaseCounters   an upsert-increment of one row in the suite's database

Counting uses fixed windows: an event of ``kind`` by ``user`` at time ``t`` increments the
counter of the window ``[floor(t / w) * w, … + w)`` and is admitted while that counter is at
most the limit. The increment and the read of its result are one atomic step in both stores,
so however many processes count at once, no more than ``limit`` events are admitted per
window. A refused event counts too (the counter is "attempts"), which changes nothing: it is
above the limit already. Fixed windows allow a burst of up to twice the limit across a window
boundary; that is the price of one counter per window, and fine for limits meant to stop
runaways, not to shape traffic.

Enforced (callers): ``AgentManager.start_run`` (``runs``), ``Metering.reserve`` before every
model call (``model_calls``), ``ToolLayer`` on every tool call over MCP or in-process
(``tool_calls``). A refusal raises :class:`~ecode_jupyter.exceptions.RateLimited`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .db.models import RateLimitCounter
from .exceptions import RateLimited
from .identity import EcodeUser

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .db import Database

log = logging.getLogger(__name__)

RUNS = "runs"
MODEL_CALLS = "model_calls"
TOOL_CALLS = "tool_calls"
#: the kinds of events counted, with the words a refusal uses for them
KINDS = {RUNS: "agent runs", MODEL_CALLS: "model calls", TOOL_CALLS: "tool calls"}
DEFAULT_RATE_LIMITS = {RUNS: "20/minute", MODEL_CALLS: "300/minute", TOOL_CALLS: "1200/minute"}
PERIODS = {"second": 1, "minute": 60, "hour": 3600}
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)\s*$")
# Counters outlive their window this long: a process whose clock is a little behind may still
# be counting in a window another process already sees as over.
GRACE_S = 60
# How often (by the limiter's clock) one process deletes the database rows of ended windows.
SWEEP_INTERVAL_S = 300


@dataclass(frozen=True)
class Limit:
    """At most ``count`` events per ``window_s`` seconds."""

    count: int
    window_s: int

    @property
    def unit(self) -> str:
        return next(name for name, seconds in PERIODS.items() if seconds == self.window_s)

    def __str__(self) -> str:
        return f"{self.count}/{self.unit}"


def parse_limit(value: Any) -> Limit | None:
    """``"20/minute"`` → Limit(20, 60); 0, ``"0"``, ``"0/hour"`` or None → None (unlimited)."""
    if value is None or (isinstance(value, int | str) and str(value).strip() == "0"):
        return None
    match = _LIMIT.match(value) if isinstance(value, str) else None
    if match is None:
        msg = f"a rate limit is 'N/second', 'N/minute' or 'N/hour' (or 0 for none), not {value!r}"
        raise ValueError(msg)
    count = int(match.group(1))
    return Limit(count, PERIODS[match.group(2)]) if count else None


def parse_limits(config: Mapping[str, Any]) -> dict[str, Limit]:
    """The limited kinds of ``c.EcodeApp.rate_limits``; a kind left out is unlimited."""
    unknown = set(config) - set(KINDS)
    if unknown:
        msg = f"unknown rate limit kinds: {', '.join(sorted(unknown))} (known: {', '.join(KINDS)})"
        raise ValueError(msg)
    limits = {}
    for kind, value in config.items():
        limit = parse_limit(value)
        if limit is not None:
            limits[kind] = limit
    return limits


@dataclass(frozen=True)
class WindowKey:
    """One counter: ``username``'s events of ``kind`` in the window starting at
    ``window_start`` (epoch seconds) of ``window_s`` seconds."""

    username: str
    kind: str
    window_s: int
    window_start: int

    @property
    def window_end(self) -> int:
        return self.window_start + self.window_s


class CounterStore(Protocol):
    """Where counts live. ``increment`` must be atomic across processes."""

    async def increment(self, key: WindowKey, now: float) -> int:
        """Add one to the counter and return its new value."""
        ...

    async def current(self, key: WindowKey) -> int:
        """The counter's value (0 when it does not exist)."""
        ...

    async def aclose(self) -> None: ...


class RateLimiter:
    """The rate limits of one deployment. One per process (``ctx.extras["limits"]``)."""

    def __init__(
        self,
        store: CounterStore,
        limits: Mapping[str, Limit],
        *,
        limit_admins: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.limits = dict(limits)
        self.limit_admins = limit_admins
        #: epoch seconds now; every process of a deployment should agree on it (NTP)
        self.clock = clock

    def _applies(self, user: EcodeUser, kind: str) -> Limit | None:
        if kind not in KINDS:
            msg = f"unknown rate limit kind {kind!r}"
            raise ValueError(msg)
        if user.is_admin and not self.limit_admins:
            return None
        return self.limits.get(kind)

    def _window(self, user: EcodeUser, kind: str, limit: Limit, now: float) -> WindowKey:
        start = int(now // limit.window_s) * limit.window_s
        return WindowKey(user.username, kind, limit.window_s, start)

    def _refusal(self, kind: str, limit: Limit, key: WindowKey, now: float) -> RateLimited:
        retry_after = max(1, math.ceil(key.window_end - now))
        msg = (
            f"too many {KINDS[kind]}: at most {limit.count} per {limit.unit} for each user "
            "(c.EcodeApp.rate_limits); "
            f"try again in {retry_after} s"
        )
        return RateLimited(msg, retry_after=retry_after, kind=kind, limit=str(limit))

    async def hit(self, user: EcodeUser, kind: str) -> None:
        """Count one event of ``kind`` by ``user``; raise RateLimited past the limit."""
        limit = self._applies(user, kind)
        if limit is None:
            return
        now = self.clock()
        key = self._window(user, kind, limit, now)
        count = await self.store.increment(key, now)
        if count > limit.count:
            log.info("rate limit: %s refused %s (%s)", user.username, kind, limit)
            raise self._refusal(kind, limit, key, now)

    async def check(self, user: EcodeUser, kind: str) -> None:
        """Raise RateLimited when the next ``hit`` would be refused now; counts nothing.

        For refusing early, before work that a refused event would leave half done (a new
        project whose prompt's run would be refused). Another process may take the last slot
        in between: the ``hit`` that follows stays the authority.
        """
        limit = self._applies(user, kind)
        if limit is None:
            return
        now = self.clock()
        key = self._window(user, kind, limit, now)
        if await self.store.current(key) >= limit.count:
            raise self._refusal(kind, limit, key, now)

    def bind(self, user: EcodeUser, kind: str) -> Callable[[], Awaitable[None]]:
        """``hit`` for one user and kind, for code that only counts (the agent's metering)."""
        return functools.partial(self.hit, user, kind)

    async def aclose(self) -> None:
        await self.store.aclose()


# -- the database ------------------------------------------------------------------------


class DatabaseCounters:
    """Counters as rows of ``rate_limit_counters`` in the suite's database.

    ``INSERT … ON CONFLICT DO UPDATE SET count = count + 1 RETURNING count`` is one atomic
    statement on SQLite (≥ 3.35) and PostgreSQL alike: concurrent increments of one row are
    serialised by the row's lock (PostgreSQL) or the database's write lock (SQLite), so each
    sees a distinct count.
    """

    def __init__(self, db: Database) -> None:
        if db.dialect not in ("sqlite", "postgresql"):
            msg = f"rate limits in the database need SQLite or PostgreSQL, not {db.dialect}"
            raise ValueError(msg)
        self.db = db
        self._insert = sqlite.insert if db.dialect == "sqlite" else postgresql.insert
        self._last_sweep: float | None = None

    def _increment(self, session: Session, key: WindowKey) -> int:
        insert = self._insert(RateLimitCounter).values(
            username=key.username,
            kind=key.kind,
            window_s=key.window_s,
            window_start=key.window_start,
            expires_at=key.window_end,
            count=1,
        )
        upsert = insert.on_conflict_do_update(
            index_elements=["username", "kind", "window_s", "window_start"],
            set_={"count": RateLimitCounter.count + 1},
        ).returning(RateLimitCounter.count)
        return int(session.execute(upsert).scalar_one())

    async def increment(self, key: WindowKey, now: float) -> int:
        count = await self.db.run(functools.partial(self._increment, key=key))
        if self._last_sweep is None or now - self._last_sweep >= SWEEP_INTERVAL_S:
            self._last_sweep = now
            # Its own transaction, after the count: a slow delete never holds up the limit.
            deleted = await self.db.run(functools.partial(_delete_ended, before=now - GRACE_S))
            if deleted:
                log.debug("rate limit: deleted %d counters of ended windows", deleted)
        return count

    async def current(self, key: WindowKey) -> int:
        def read(session: Session) -> int:
            count = session.scalar(
                select(RateLimitCounter.count).where(
                    RateLimitCounter.username == key.username,
                    RateLimitCounter.kind == key.kind,
                    RateLimitCounter.window_s == key.window_s,
                    RateLimitCounter.window_start == key.window_start,
                )
            )
            return int(count or 0)

        return await self.db.run(read)

    async def aclose(self) -> None:
        """Nothing of its own to close: the database belongs to the context."""


def _delete_ended(session: Session, *, before: float) -> int:
    result = session.execute(delete(RateLimitCounter).where(RateLimitCounter.expires_at < before))
    return int(getattr(result, "rowcount", 0) or 0)


# -- Redis -------------------------------------------------------------------------------


class RedisCounters:
    """Counters as Redis keys ``{prefix}{kind}:{window_s}:{window_start}:{username}``.

    INCR and EXPIRE go in one MULTI/EXEC, so a key never exists without its expiry; Redis
    deletes ended windows itself. While Redis cannot be reached, events are admitted (and a
    warning logged): an outage of the limiter's store should not stop all work.
    """

    def __init__(self, url: str, *, prefix: str = "ecode:ratelimit:") -> None:
        self.url = url
        self.prefix = prefix
        self._client: Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned_at = 0.0

    def _redis(self) -> Redis:
        # redis.asyncio's connections belong to the loop that opened them: the CLI may run
        # several loops in one process, one after the other.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            from redis.asyncio import Redis

            self._client = Redis.from_url(self.url)
            self._loop = loop
        return self._client

    def _name(self, key: WindowKey) -> str:
        return f"{self.prefix}{key.kind}:{key.window_s}:{key.window_start}:{key.username}"

    def _unreachable(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:
            self._warned_at = now
            log.warning("rate limits not enforced: Redis is unreachable (%s)", exc)

    async def increment(self, key: WindowKey, now: float) -> int:
        from redis.exceptions import ConnectionError, TimeoutError

        # Relative to the limiter's clock, so a key lives until its window (and the grace)
        # is over whatever Redis's own clock says.
        ttl = max(1, math.ceil(key.window_end - now)) + GRACE_S
        name = self._name(key)
        try:
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.expire(name, ttl)
                count, _ = await pipe.execute()
        except (ConnectionError, TimeoutError) as exc:
            self._unreachable(exc)
            return 0
        return int(count)

    async def current(self, key: WindowKey) -> int:
        from redis.exceptions import ConnectionError, TimeoutError

        try:
            value = await self._redis().get(self._name(key))
        except (ConnectionError, TimeoutError) as exc:
            self._unreachable(exc)
            return 0
        return int(value or 0)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def make_rate_limiter(
    db: Database,
    *,
    limits: Mapping[str, Any],
    redis_url: str = "",
    limit_admins: bool = True,
) -> RateLimiter:
    """The limiter for ``c.EcodeApp.rate_limits``: counts in Redis when ``redis_url`` is set,
    in the database otherwise."""
    store: CounterStore = RedisCounters(redis_url) if redis_url else DatabaseCounters(db)
    return RateLimiter(store, parse_limits(limits), limit_admins=limit_admins)
