"""Billing throughput, and the latency a reservation adds to a model call.

    python benchmarks/bench_billing.py [--pg postgresql+psycopg://postgres@127.0.0.1/test]
                                       [--writers 32] [--seconds 4] [--calls 400] [--no-pg]

For SQLite (a temporary file) and PostgreSQL (a scratch database created on the --pg server
and dropped afterwards), each at head schema:

1. Settled charges per second: ``--writers`` coroutines, each on its own pooled connection,
   loop reserve → settle as the agent does around a model call, for ``--seconds``. Run twice:
   every writer a different user, and all writers one user (one hot account row). Printed
   against two baselines measured in the same run: the same writers committing one plain
   single-row INSERT per transaction (what the database does per commit, no billing), and a
   single writer doing reserve → settle.
2. Latency: ``--calls`` loopback no-op model calls (HTTP POST to an in-process server that
   answers at once) alone, alternating with the same call wrapped in reserve → settle. Prints
   p50/p99 of the bare call, of the billed call, and of what billing adds (reserve + settle).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from _common import pct
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ecode_jupyter.agent.providers.base import Usage
from ecode_jupyter.billing import BillingManager, PriceTable
from ecode_jupyter.db import Database
from ecode_jupyter.db.schema import upgrade
from ecode_jupyter.identity import EcodeUser

ADMIN = EcodeUser("bench-admin", "Bench", True)
MODEL = "claude-sonnet-4-5"
USAGE = Usage(input_tokens=1800, output_tokens=400, cache_read_tokens=6000, cache_write_tokens=0)


async def _for_seconds(
    writers: int, seconds: float, step: Callable[[int, int], Awaitable[Any]]
) -> float:
    """Run ``step(writer, n)`` in ``writers`` concurrent loops; completed steps per second."""
    deadline = time.perf_counter() + seconds
    counts = [0] * writers

    async def loop(w: int) -> None:
        while time.perf_counter() < deadline:
            await step(w, counts[w])
            counts[w] += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(writers)))
    return sum(counts) / (time.perf_counter() - start)


async def _throughput(db: Database, billing: BillingManager, writers: int, seconds: float) -> None:
    tag = uuid.uuid4().hex[:8]
    users = [f"bench-{tag}-{w}" for w in range(writers)]
    hot = f"bench-{tag}-hot"
    for user in [*users, hot]:
        await billing.grant(ADMIN, username=user, amount_micros=10**15)
    await db.run(lambda s: s.execute(text("CREATE TABLE IF NOT EXISTS bench_noop (v BIGINT)")))

    async def insert_only(w: int, n: int) -> None:
        await db.run(lambda s: s.execute(text("INSERT INTO bench_noop (v) VALUES (:v)"), {"v": n}))

    def charge(user_of: Callable[[int], str], prefix: str) -> Callable[[int, int], Awaitable[Any]]:
        async def step(w: int, n: int) -> None:
            key = f"{prefix}-{w}-{n}"
            res = await billing.reserve(
                user=user_of(w),
                project_id="bench",
                run_id=f"run-{w}",
                model=MODEL,
                input_tokens_estimate=8000,
                max_output_tokens=1024,
                key=key,
            )
            await billing.settle(res, USAGE, key=f"{key}/usage")

        return step

    base = await _for_seconds(writers, seconds, insert_only)
    single = await _for_seconds(1, seconds, charge(lambda w: users[0], f"{tag}-single"))
    spread = await _for_seconds(writers, seconds, charge(lambda w: users[w], f"{tag}-spread"))
    one_row = await _for_seconds(writers, seconds, charge(lambda w: hot, f"{tag}-hot"))
    print(f"  baseline: {writers} writers, plain INSERT txns   {base:9.1f} /s")
    print(f"  baseline: 1 writer, reserve+settle          {single:9.1f} charges/s")
    print(
        f"  {writers} writers, {writers} users, reserve+settle   {spread:9.1f} charges/s"
        f"  ({spread / single:.2f}x one writer, {spread / base:.3f}x plain INSERTs)"
    )
    print(
        f"  {writers} writers, 1 user (hot row)          {one_row:9.1f} charges/s"
        f"  ({one_row / single:.2f}x one writer)"
    )


class _Loopback:
    """A minimal HTTP server answering every POST at once, like a model that returns nothing."""

    BODY = b'{"id":"msg","content":[],"usage":{"input_tokens":1,"output_tokens":1}}'

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/messages"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(self.BODY)).encode()
                    + b"\r\n\r\n"
                    + self.BODY
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def close(self) -> None:
        self.server.close()
        # Let the handlers see the client's EOF and finish before the loop shuts down.
        await asyncio.sleep(0.1)
        await self.server.wait_closed()


async def _latency(billing: BillingManager, calls: int) -> None:
    loopback = _Loopback()
    url = await loopback.start()
    user = f"bench-lat-{uuid.uuid4().hex[:8]}"
    await billing.grant(ADMIN, username=user, amount_micros=10**15)
    payload = {"model": MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}]}
    bare: list[float] = []
    billed: list[float] = []
    added: list[float] = []
    async with httpx.AsyncClient() as client:

        async def call() -> None:
            resp = await client.post(url, json=payload)
            resp.raise_for_status()

        async def billed_call(n: int) -> float:
            t0 = time.perf_counter()
            res = await billing.reserve(
                user=user,
                project_id="bench",
                run_id="lat",
                model=MODEL,
                input_tokens_estimate=8000,
                max_output_tokens=1024,
                key=f"{user}-{n}",
            )
            t1 = time.perf_counter()
            await call()
            t2 = time.perf_counter()
            await billing.settle(res, USAGE, key=f"{user}-{n}/usage")
            t3 = time.perf_counter()
            added.append((t1 - t0) + (t3 - t2))
            return t3 - t0

        for n in range(20):  # warm connections, pools and caches on both paths
            await call()
            await billed_call(-1 - n)
        added.clear()
        for n in range(calls):  # alternate so drift hits both alike
            t0 = time.perf_counter()
            await call()
            bare.append(time.perf_counter() - t0)
            billed.append(await billed_call(n))
    await loopback.close()

    def row(name: str, values: list[float]) -> str:
        return (
            f"  {name:<34} p50 {statistics.median(values) * 1e3:7.2f} ms"
            f"   p99 {pct(values, 0.99) * 1e3:7.2f} ms"
        )

    print(row("bare loopback model call", bare))
    print(row("same call with reserve + settle", billed))
    print(row("added by billing (reserve+settle)", added))
    print(
        f"  p99 added per model call: {(pct(billed, 0.99) - pct(bare, 0.99)) * 1e3:.2f} ms "
        f"(billed/bare p99 ratio {pct(billed, 0.99) / pct(bare, 0.99):.1f}x)"
    )


async def _bench(url: str, label: str, args: argparse.Namespace) -> None:
    print(f"\n== {label} ==")
    db = Database(url, pool_size=args.writers)
    try:
        billing = BillingManager(db, PriceTable(), monthly_allowance_micros=0)
        await _throughput(db, billing, args.writers, args.seconds)
        await _latency(billing, args.calls)
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pg",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL server to create a scratch database on",
    )
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        setup = Database(url)
        upgrade(setup)
        setup.dispose()
        asyncio.run(_bench(url, "SQLite (WAL, BEGIN IMMEDIATE)", args))

    if args.no_pg:
        return
    name = f"ecode_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(args.pg), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
        setup = Database(url)
        upgrade(setup)
        setup.dispose()
        asyncio.run(_bench(url, "PostgreSQL (READ COMMITTED)", args))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
