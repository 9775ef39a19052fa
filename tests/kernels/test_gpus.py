"""GPU leases without a server: discovery from a fake ``nvidia-smi``, exclusive acquire under
concurrency, the start-up sweep, and metering on a clock the test moves."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ecode_jupyter.billing import BillingManager, make_billing_manager
from ecode_jupyter.billing.models import LedgerEntry
from ecode_jupyter.billing.prices import GpuPrices
from ecode_jupyter.db import Database
from ecode_jupyter.db.models import GpuLease, GpuSlot
from ecode_jupyter.exceptions import InsufficientCredits, InvalidInput
from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.kernels.gpus import (
    GpuDevice,
    GpuLeases,
    GpuUnavailable,
    discover,
    from_config,
    parse_nvidia_smi,
    requested_gpus,
    store,
)
from ecode_jupyter.sandbox import SandboxLauncher
from ecode_jupyter.sandbox.policy import SandboxPolicy
from ecode_jupyter.workspace.commands import LaunchSpec

H200 = "GPU-6f0c2a4e-1d3b-4c5a-9e8f-0a1b2c3d4e5f"
A100 = "GPU-1b2e3c4d-5e6f-4a1b-8c9d-0e1f2a3b4c5d"
MIG_A = "MIG-9a1c2b3d-4e5f-5a6b-9c0d-1e2f3a4b5c6d"
MIG_B = "MIG-77d01122-3344-5566-7788-99aabbccddee"
LISTING = f"""GPU 0: NVIDIA H200 (UUID: {H200})
GPU 1: NVIDIA A100-SXM4-40GB (UUID: {A100})
  MIG 3g.20gb     Device  0: (UUID: {MIG_A})
  MIG 3g.20gb     Device  1: (UUID: {MIG_B})
"""


def fake_nvidia_smi(folder: Path, listing: str, *, exit_code: int = 0) -> Path:
    """An ``nvidia-smi`` that answers ``-L`` with ``listing`` (put its folder on PATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = "-L" ] || exit 2\n'
        f"cat <<'LISTING'\n{listing}LISTING\n"
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def test_nvidia_smi_listing_gives_whole_gpus_and_mig_instances() -> None:
    devices = parse_nvidia_smi(LISTING)
    # The A100 is in MIG mode: its instances are leased, not the GPU itself.
    assert [d.id for d in devices] == [H200, MIG_A, MIG_B]
    assert devices[0].name == "NVIDIA H200"
    assert devices[0].nodes == ("/dev/nvidia0",)
    assert devices[1].name == "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    assert devices[1].nodes == ("/dev/nvidia1",)  # the parent GPU's node
    assert devices[1].price_keys() == (
        "NVIDIA A100-SXM4-40GB MIG 3g.20gb",
        "NVIDIA A100-SXM4-40GB",
        "default",
    )


def test_discovery_runs_nvidia_smi_from_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path / 'bin', LISTING)}:{os.environ['PATH']}")
    assert [d.id for d in discover()] == [H200, MIG_A, MIG_B]
    # A driver that is not loaded: nvidia-smi fails, and the server has no GPUs (logged).
    fake_nvidia_smi(tmp_path / "bin", "NVIDIA-SMI has failed\n", exit_code=9)
    assert discover() == []
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert discover() == []


def test_configured_devices_and_their_mistakes() -> None:
    devices = from_config(["0", {"id": H200, "name": "NVIDIA H200", "nodes": ["/dev/x"]}])
    assert devices[0] == GpuDevice("0", "gpu", ("/dev/nvidia0",))
    assert devices[1].nodes == ("/dev/x",)
    for bad in ([{"id": ""}], [{"id": "0", "colour": 1}], ["0", "0"], [{"id": "0", "nodes": "x"}]):
        with pytest.raises(InvalidInput):
            from_config(bad)
    assert requested_gpus(None) == requested_gpus("") == 0
    assert requested_gpus(" 2 ") == 2
    with pytest.raises(InvalidInput, match="KERNEL_ECODE_GPUS"):
        requested_gpus("lots")


def test_gpu_prices_per_model_with_a_default() -> None:
    prices = GpuPrices({"NVIDIA H200": 3.6, "default": 1})
    h200, mig = parse_nvidia_smi(LISTING)[:2]
    assert prices.per_hour_micros(h200.price_keys()) == 3_600_000
    assert prices.per_hour_micros(mig.price_keys()) == 1_000_000
    # 3.6 credits an hour is 1 micro-credit a millisecond; a part is rounded up, never down.
    assert GpuPrices.cost(3_600_000, 1500) == 1500
    assert GpuPrices.cost(1, 1) == 1
    assert GpuPrices.cost(3_600_000, 0) == 0
    with pytest.raises(InvalidInput):
        GpuPrices({"default": -1})


def test_the_sandbox_binds_only_the_leased_device_nodes(tmp_path: Path) -> None:
    launcher = SandboxLauncher(SandboxPolicy())
    if not launcher.usable:
        pytest.skip("bubblewrap cannot run here")
    node = tmp_path / "nvidia0"
    node.write_text("gpu")
    spec = LaunchSpec(argv=["true"], cwd=tmp_path, env={}, devices=(node,))
    prepared = launcher.prepare(spec)
    try:
        argv = prepared.argv
        at = argv.index("--dev-bind")
        assert argv[at : at + 3] == ["--dev-bind", str(node), str(node)]
        assert f"devices: only {node}" in prepared.report.summary()
    finally:
        prepared.release()
    plain = launcher.prepare(LaunchSpec(argv=["true"], cwd=tmp_path, env={}))
    try:
        assert "--dev-bind" not in plain.argv
    finally:
        plain.release()


# -- leases on the database --------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _billing(db: Database, **gpu_prices: Any) -> BillingManager:
    return make_billing_manager(
        db,
        model_prices={},
        free_models=[],
        monthly_allowance=5,
        reservation_ttl_s=1800,
        gpu_prices={"default": 3.6, **gpu_prices},
    )


def _leases(db: Database, devices: list[GpuDevice], **kwargs: Any) -> GpuLeases:
    kwargs.setdefault("host", "gpu-host")
    return GpuLeases(db, kwargs.pop("billing", _billing(db)), devices, **kwargs)


TWO = [GpuDevice("GPU-a", "NVIDIA H200", ()), GpuDevice("GPU-b", "NVIDIA H200", ())]


async def test_leases_are_exclusive_under_concurrency(ecode_db: Database) -> None:
    leases = _leases(ecode_db, TWO)
    results = await asyncio.gather(
        *(leases.acquire(f"k{i}", "p1", "alice", 1) for i in range(6)), return_exceptions=True
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert sorted(d for lease in won for d in lease.device_ids) == ["GPU-a", "GPU-b"]
    assert len(lost) == 4 and all(isinstance(e, GpuUnavailable) for e in lost)
    assert "no GPU is free" in str(lost[0])
    # A kernel asking for two gets both or none: none are free, and nothing was taken.
    with pytest.raises(GpuUnavailable):
        await leases.acquire("k-two", "p1", "alice", 2)
    kernel = won[0].kernel_id
    await leases.release(kernel, "kernel shut down")
    again = await leases.acquire("k-next", "p1", "bob", 1)
    assert again.device_ids == won[0].device_ids
    slots = await ecode_db.run(lambda s: s.scalars(select(GpuSlot)).all())
    assert sorted(slot.holders for slot in slots) == [1, 1]


async def test_sharing_lets_several_kernels_hold_one_device(ecode_db: Database) -> None:
    leases = _leases(ecode_db, TWO[:1], sharers=2)
    await leases.acquire("k1", "p1", "alice", 1)
    await leases.acquire("k2", "p1", "bob", 1)
    with pytest.raises(GpuUnavailable):
        await leases.acquire("k3", "p1", "carol", 1)


async def test_a_restarted_server_ends_the_leases_its_predecessor_left(
    ecode_db: Database,
) -> None:
    first = _leases(ecode_db, TWO)
    await first.acquire("k1", "p1", "alice", 1)
    # The first server died: its process is gone (a pid no process has here).
    dead = "gpu-host:4194304:1"
    await ecode_db.run(
        lambda s: s.execute(GpuLease.__table__.update().values(holder=dead))  # type: ignore[attr-defined]
    )
    second = _leases(ecode_db, TWO)
    await second.start()
    rows = await ecode_db.run(lambda s: s.scalars(select(GpuLease)).all())
    assert [(r.kernel_id, r.end_reason) for r in rows] == [("k1", "server restarted")]
    assert rows[0].reservation_id is None
    # Its credit hold was let go, and both devices are free for the new server's kernels.
    account = await second.billing.account_summary("alice")  # type: ignore[union-attr]
    assert account["reserved_micros"] == 0
    both = await second.acquire("k2", "p1", "alice", 2)
    assert sorted(both.device_ids) == ["GPU-a", "GPU-b"]


async def test_a_neighbour_servers_leases_survive_the_sweep(ecode_db: Database) -> None:
    neighbour = _leases(ecode_db, TWO)
    await neighbour.acquire("k1", "p1", "alice", 1)
    # Another live server on this host (this very process stands in for it).
    await ecode_db.run(
        lambda s: s.execute(
            GpuLease.__table__.update().values(holder=store.this_holder("gpu-host"))  # type: ignore[attr-defined]
        )
    )
    me = _leases(ecode_db, TWO)
    me.holder = "gpu-host:1:other"
    await me.start()
    rows = await ecode_db.run(lambda s: s.scalars(select(GpuLease)).all())
    assert rows[0].ended_at is None
    with pytest.raises(GpuUnavailable):
        await me.acquire("k2", "p1", "bob", 2)


async def test_gpu_time_is_held_ahead_and_settled_by_the_slice(ecode_db: Database) -> None:
    clock = Clock()
    leases = _leases(ecode_db, TWO[:1], slice_s=10, clock=clock)
    lease = await leases.acquire("k1", "p1", "alice", 1)
    account = await leases.billing.account_summary("alice")  # type: ignore[union-attr]
    # 3.6 credits an hour: the hold is one and a half slices, 15 s = 15000 micro-credits.
    assert account["reserved_micros"] == 15_000
    clock.now += 10
    await leases.check()
    clock.now += 4
    await leases.release("k1", "kernel shut down")
    entries = await ecode_db.run(
        lambda s: s.scalars(
            select(LedgerEntry).where(LedgerEntry.kind == "settlement").order_by(LedgerEntry.id)
        ).all()
    )
    assert [(e.model, -e.amount_micros) for e in entries] == [
        ("gpu:NVIDIA H200", 10_000),
        ("gpu:NVIDIA H200", 4_000),
    ]
    assert entries[0].details["gpu_seconds"] == 10
    assert entries[0].details["kernel_id"] == "k1"
    account = await leases.billing.account_summary("alice")  # type: ignore[union-attr]
    assert account["reserved_micros"] == 0
    row = (await ecode_db.run(lambda s: s.scalars(select(GpuLease)).all()))[0]
    assert (row.billed_ms, row.cost_micros, row.end_reason) == (14_000, 14_000, "kernel shut down")
    assert lease.ended


async def test_running_out_of_credits_stops_the_kernel_and_ends_the_lease(
    ecode_db: Database,
) -> None:
    clock = Clock()
    billing = _billing(ecode_db)
    billing.monthly_allowance_micros = 0
    admin = EcodeUser("admin", "Admin", True)
    await billing.grant(admin, username="alice", amount_micros=40_000)
    leases = _leases(ecode_db, TWO[:1], slice_s=10, clock=clock, billing=billing)
    await leases.acquire("k1", "p1", "alice", 1)
    stopped: list[str] = []

    async def stop() -> None:
        stopped.append("k1")
        await leases.release("k1", "kernel shut down")  # as the provisioner's cleanup does

    leases.watch("k1", alive=lambda: True, stop=stop)
    for _ in range(5):
        clock.now += 10
        await leases.check()
    assert stopped == ["k1"]
    assert "k1" not in leases.active
    row = (await ecode_db.run(lambda s: s.scalars(select(GpuLease)).all()))[0]
    assert row.end_reason == "out_of_credits"
    account = await billing.account_summary("alice")
    # Three slices of 10 s were paid (30000 of 40000): the 10000 left cannot hold the next
    # one ahead (15000), so the kernel stopped with credits to spare rather than overspend.
    assert (account["balance_micros"], account["reserved_micros"]) == (10_000, 0)
    # A new lease is refused with the reason, and nothing is left taken.
    with pytest.raises(InsufficientCredits, match="out of credits for GPU time"):
        await leases.acquire("k2", "p1", "alice", 1)
    slots = await ecode_db.run(lambda s: s.scalars(select(GpuSlot)).all())
    assert [slot.holders for slot in slots] == [0]


async def test_a_dead_kernel_loses_its_lease_but_a_restart_does_not(ecode_db: Database) -> None:
    clock = Clock()
    leases = _leases(ecode_db, TWO[:1], slice_s=10, clock=clock)
    await leases.acquire("k1", "p1", "alice", 1)
    alive = [True]
    leases.watch("k1", alive=lambda: alive[0], stop=lambda: None)
    # A restart on purpose: the process is gone for a moment, the lease stays.
    leases.stopping("k1")
    alive[0] = False
    await leases.check()
    assert "k1" in leases.active
    again = await leases.acquire("k1", "p1", "alice", 1)  # the restart's pre_launch
    leases.watch("k1", alive=lambda: alive[0], stop=lambda: None)
    assert again is leases.active["k1"]
    # Now it dies by itself: the lease goes at the next check.
    await leases.check()
    assert "k1" not in leases.active
    history = await leases.kernel_history("k1")
    assert [h["end_reason"] for h in history] == ["kernel died"]


async def test_a_failed_settlement_is_retried_not_lost(ecode_db: Database) -> None:
    clock = Clock()
    leases = _leases(ecode_db, TWO[:1], slice_s=10, clock=clock)
    await leases.acquire("k1", "p1", "alice", 1)
    billing = leases.billing
    assert billing is not None
    settle = billing.settle_micros
    calls: list[int] = []

    async def flaky(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            msg = "the database went away"
            raise OSError(msg)
        return await settle(*args, **kwargs)

    billing.settle_micros = flaky  # type: ignore[method-assign]
    clock.now += 10
    with pytest.raises(OSError):
        await leases.check()
    clock.now += 2
    await leases.check()
    entries = await ecode_db.run(
        lambda s: s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "settlement")).all()
    )
    # One charge for all 12 s (within the 15 s hold), under the slice's one key.
    assert [-e.amount_micros for e in entries] == [12_000]
