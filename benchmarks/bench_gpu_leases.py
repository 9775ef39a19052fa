"""What a GPU lease adds to a kernel's start and stop, against a model call's billing.

    python benchmarks/bench_gpu_leases.py [--cycles 200]
                                          [--pg postgresql+psycopg://postgres@127.0.0.1/test]

For SQLite (a temporary file) and, unless ``--no-pg``, PostgreSQL (a scratch database created
on the --pg server and dropped afterwards), alternating in one loop so load drift hits both:

- lease: ``GpuLeases.acquire`` (the exclusive device claim and the first slice's credit hold,
  what the provisioner's ``pre_launch`` waits for) then ``release`` (the slice settled, the
  device freed, what ``cleanup`` waits for);
- baseline: ``BillingManager.reserve`` then ``settle`` of one model call, the billing every
  agent turn already pays.

Prints p50/p99 of each and the ratio of the medians. A lease is five transactions (claim,
hold, hold recorded on the rows, settle, end), a model call two; a cold kernel start is
~0.5 s (``bench_kernels.py``), so either is a small part of it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from _common import pct
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ecode_jupyter.agent.providers.base import Usage
from ecode_jupyter.billing import make_billing_manager
from ecode_jupyter.db import Database
from ecode_jupyter.db.schema import upgrade
from ecode_jupyter.kernels.gpus import GpuDevice, GpuLeases


async def measure(url: str, cycles: int) -> tuple[list[float], list[float]]:
    db = Database(url)
    upgrade(db)
    billing = make_billing_manager(
        db,
        model_prices={},
        free_models=[],
        monthly_allowance=1_000_000,
        reservation_ttl_s=1800,
        gpu_prices={"default": 2},
    )
    devices = [GpuDevice("GPU-bench", "NVIDIA H200", ())]
    leases = GpuLeases(db, billing, devices, host=f"bench-{uuid.uuid4().hex[:8]}")
    await leases.start()
    lease_s: list[float] = []
    model_s: list[float] = []
    usage = Usage(input_tokens=1000, output_tokens=200)
    try:
        for i in range(cycles):
            started = time.perf_counter()
            await leases.acquire(f"kernel-{i}", "project", "bench", 1)
            await leases.release(f"kernel-{i}", "kernel shut down")
            lease_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            held = await billing.reserve(
                user="bench",
                project_id="project",
                run_id="run",
                model="claude-sonnet-4-6",
                input_tokens_estimate=1000,
                max_output_tokens=1000,
                key=f"call-{i}",
            )
            await billing.settle(held, usage, key=f"call-{i}")
            model_s.append(time.perf_counter() - started)
    finally:
        db.dispose()
    return lease_s, model_s


def report(name: str, lease_s: list[float], model_s: list[float]) -> None:
    lp50, mp50 = pct(lease_s, 0.5) * 1000, pct(model_s, 0.5) * 1000
    print(
        f"{name:11s} lease start+stop p50 {lp50:6.2f} ms p99 {pct(lease_s, 0.99) * 1000:6.2f} ms"
        f" | model call reserve+settle p50 {mp50:6.2f} ms p99 {pct(model_s, 0.99) * 1000:6.2f}"
        f" ms | ratio {lp50 / mp50:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        report("SQLite", *asyncio.run(measure(sqlite, args.cycles)))
    if args.no_pg:
        return
    name = f"ecode_bench_gpu_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(args.pg), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
        report("PostgreSQL", *asyncio.run(measure(url, args.cycles)))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
