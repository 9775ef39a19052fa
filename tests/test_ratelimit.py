"""The rate limiter on each store it counts in: SQLite, PostgreSQL and Redis, real ones.

Each limiter here reads a clock the test sets, so a window never ends between two hits by
accident; concurrency uses two limiters with separate clients (two processes' worth).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_core.utils import ensure_event_loop
from sqlalchemy import func, select
from traitlets import TraitError

from ecode_jupyter.agent.metering import Metering
from ecode_jupyter.app import EcodeApp
from ecode_jupyter.db import Database
from ecode_jupyter.db.models import RateLimitCounter
from ecode_jupyter.exceptions import RateLimited
from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.ratelimit import (
    GRACE_S,
    MODEL_CALLS,
    RUNS,
    SWEEP_INTERVAL_S,
    TOOL_CALLS,
    CounterStore,
    DatabaseCounters,
    Limit,
    RateLimiter,
    RedisCounters,
    parse_limit,
    parse_limits,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
# 30.25 s into a minute (and into an hour): a refusal's Retry-After is the 30 s that are left.
T0 = 1_800_000_000 + 30.25
ALICE = EcodeUser("alice", "Alice", False)
BOB = EcodeUser("bob", "Bob", False)
ROOT = EcodeUser("root", "Root", True)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def redis_reachable() -> bool:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


StoreFactory = Callable[[], CounterStore]


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def new_store(
    request: pytest.FixtureRequest,
    ecode_sqlite_template: Path,
    ecode_postgres_url: str | None,
    tmp_path: Path,
) -> Iterator[StoreFactory]:
    """Makes stores that share one set of counters, each with its own client (connections)."""
    dbs: list[Database] = []
    if request.param == "redis":
        if not redis_reachable():
            pytest.skip(f"no Redis at {REDIS_URL} (start redis-server to run this)")
        prefix = f"ecode:test:{uuid.uuid4().hex}:"  # counters of this test only
        yield lambda: RedisCounters(REDIS_URL, prefix=prefix)
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
        return
    if request.param == "postgresql":
        if not ecode_postgres_url:
            pytest.skip("set ECODE_TEST_DATABASE_URL to run against PostgreSQL")
        url = ecode_postgres_url
    else:
        path = tmp_path / "limits.sqlite"
        shutil.copy(ecode_sqlite_template, path)
        url = f"sqlite:///{path}"

    def make() -> CounterStore:
        db = Database(url, pool_size=20)
        dbs.append(db)
        return DatabaseCounters(db)

    yield make
    for db in dbs:
        if request.param == "postgresql":
            db.call(lambda s: s.query(RateLimitCounter).delete())
        db.dispose()


@pytest.fixture
def limiter_for(new_store: StoreFactory) -> Iterator[Callable[..., RateLimiter]]:
    made: list[RateLimiter] = []

    def make(limits: dict[str, str], clock: Clock, **kwargs: Any) -> RateLimiter:
        limiter = RateLimiter(new_store(), parse_limits(limits), clock=clock, **kwargs)
        made.append(limiter)
        return limiter

    yield make
    # The loop pytest-jupyter ran the test on, where the Redis connections were opened.
    loop = ensure_event_loop()
    for limiter in made:
        loop.run_until_complete(limiter.aclose())


# -- limits as configured ----------------------------------------------------------------


def test_limits_parse_from_config_and_zero_or_missing_means_unlimited() -> None:
    assert parse_limit("20/minute") == Limit(20, 60)
    assert parse_limit(" 5 / second ") == Limit(5, 1)
    assert str(parse_limit("300/hour")) == "300/hour"
    assert parse_limit(0) is None and parse_limit("0") is None and parse_limit("0/hour") is None
    assert parse_limits({"runs": "2/hour", "tool_calls": 0}) == {RUNS: Limit(2, 3600)}
    for bad in ("20", "20/day", "-1/minute", "lots", 20):
        with pytest.raises(ValueError, match="N/minute"):
            parse_limit(bad)
    with pytest.raises(ValueError, match="unknown rate limit kinds: run"):
        parse_limits({"run": "1/minute"})


def test_a_bad_limit_in_config_is_refused_when_set() -> None:
    app = EcodeApp()
    assert app.rate_limits == {
        "runs": "20/minute",
        "model_calls": "300/minute",
        "tool_calls": "1200/minute",
    }
    with pytest.raises(TraitError, match="N/minute"):
        app.rate_limits = {"runs": "20 per minute"}
    app.rate_limits = {"runs": "1/hour"}
    assert parse_limits(app.rate_limits) == {RUNS: Limit(1, 3600)}


# -- the limiter on each store ------------------------------------------------------------


async def test_admits_up_to_the_limit_then_refuses_until_the_window_ends(
    limiter_for: Callable[..., RateLimiter],
) -> None:
    clock = Clock()
    limiter = limiter_for({"runs": "3/minute"}, clock)
    for _ in range(3):
        await limiter.hit(ALICE, RUNS)
    with pytest.raises(RateLimited) as refused:
        await limiter.hit(ALICE, RUNS)
    exc = refused.value
    assert (exc.status, exc.code, exc.retry_after) == (429, "rate_limited", 30)
    assert "too many agent runs: at most 3 per minute" in exc.message
    assert "c.EcodeApp.rate_limits" in exc.message and "try again in 30 s" in exc.message
    assert exc.to_json()["error"]["details"] == {
        "retry_after": 30,
        "kind": "runs",
        "limit": "3/minute",
    }
    # Others, and other kinds, have counters of their own; unconfigured kinds are unlimited.
    await limiter.hit(BOB, RUNS)
    for _ in range(10):
        await limiter.hit(ALICE, TOOL_CALLS)
    # The next window admits again.
    clock.now += 30
    for _ in range(3):
        await limiter.hit(ALICE, RUNS)
    with pytest.raises(RateLimited):
        await limiter.hit(ALICE, RUNS)


async def test_check_refuses_at_the_limit_without_counting(
    limiter_for: Callable[..., RateLimiter],
) -> None:
    limiter = limiter_for({"model_calls": "2/hour"}, Clock())
    for _ in range(5):
        await limiter.check(ALICE, MODEL_CALLS)
    await limiter.hit(ALICE, MODEL_CALLS)
    await limiter.hit(ALICE, MODEL_CALLS)
    with pytest.raises(RateLimited) as refused:
        await limiter.check(ALICE, MODEL_CALLS)
    # 30 s into the hour: the rest of it.
    assert refused.value.retry_after == 3600 - 30


async def test_admins_are_limited_unless_exempted(
    limiter_for: Callable[..., RateLimiter],
) -> None:
    clock = Clock()
    limited = limiter_for({"runs": "1/minute"}, clock)
    await limited.hit(ROOT, RUNS)
    with pytest.raises(RateLimited):
        await limited.hit(ROOT, RUNS)
    exempt = limiter_for({"runs": "1/minute"}, clock, limit_admins=False)
    for _ in range(3):
        await exempt.hit(ROOT, RUNS)
    await exempt.hit(ALICE, RUNS)
    with pytest.raises(RateLimited):
        await exempt.hit(ALICE, RUNS)


async def test_concurrent_hits_through_two_limiters_never_admit_more_than_the_limit(
    limiter_for: Callable[..., RateLimiter],
) -> None:
    clock = Clock()
    limit = 15
    first = limiter_for({"tool_calls": f"{limit}/minute"}, clock)
    second = limiter_for({"tool_calls": f"{limit}/minute"}, clock)

    results = await asyncio.gather(
        *((first if n % 2 else second).hit(ALICE, TOOL_CALLS) for n in range(60)),
        return_exceptions=True,
    )
    admitted = [r for r in results if r is None]
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(admitted) == limit
    assert len(refused) == 60 - limit
    # And neither lets anyone else's counter be touched.
    await first.hit(BOB, TOOL_CALLS)


async def test_ended_windows_are_deleted_from_the_database(
    ecode_db: Database,
) -> None:
    clock = Clock()
    limiter = RateLimiter(
        DatabaseCounters(ecode_db), parse_limits({"runs": "5/second"}), clock=clock
    )
    for second in range(3):
        clock.now = T0 + second
        await limiter.hit(ALICE, RUNS)

    def rows() -> int:
        return int(ecode_db.call(lambda s: s.scalar(select(func.count(RateLimitCounter.kind)))))

    assert rows() == 3
    clock.now = T0 + SWEEP_INTERVAL_S + GRACE_S + 10
    await limiter.hit(ALICE, RUNS)
    assert rows() == 1  # only the window counted just now


async def test_an_unreachable_redis_admits_rather_than_stopping_all_work() -> None:
    limiter = RateLimiter(
        RedisCounters("redis://127.0.0.1:1/0"), parse_limits({"runs": "1/hour"}), clock=Clock()
    )
    try:
        for _ in range(3):
            await limiter.hit(ALICE, RUNS)
        await limiter.check(ALICE, RUNS)
    finally:
        await limiter.aclose()


# -- a run's model calls --------------------------------------------------------------------


def _metering(ecode_db: Database, limiter: RateLimiter) -> Metering:
    return Metering(
        None,
        ecode_db,
        run_id="r1",
        username=ALICE.username,
        project_id="p1",
        model="offline",
        rate_limit=limiter.bind(ALICE, MODEL_CALLS),
    )


async def test_a_model_call_waits_out_a_short_refusal(ecode_db: Database) -> None:
    # The real clock: a per-second limit's refusal is over within a second.
    limiter = RateLimiter(DatabaseCounters(ecode_db), parse_limits({"model_calls": "1/second"}))
    metering = _metering(ecode_db, limiter)
    for n in range(3):
        assert await metering.reserve(f"k{n}", 100, 100) is None  # admitted, no billing


async def test_a_model_call_refused_for_long_raises(ecode_db: Database) -> None:
    limiter = RateLimiter(
        DatabaseCounters(ecode_db), parse_limits({"model_calls": "1/hour"}), clock=Clock()
    )
    metering = _metering(ecode_db, limiter)
    await metering.reserve("k1", 100, 100)
    with pytest.raises(RateLimited, match="too many model calls: at most 1 per hour"):
        await metering.reserve("k2", 100, 100)
