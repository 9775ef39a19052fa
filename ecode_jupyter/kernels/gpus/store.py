"""The GPU lease transactions. Each function runs inside one database transaction.

Exclusivity without check-then-act: taking a device is one conditional UPDATE,
``SET holders = holders + 1 WHERE … AND holders < :most`` (``:most`` is 1 for exclusive
leases). SQLite runs one writer at a time (``BEGIN IMMEDIATE``) and PostgreSQL re-checks the
condition on the row it locks, so two kernels — of this server or of another server on the
same host sharing the database — can never both take the last place. A kernel asking for
several devices gets all of them or none (the transaction rolls back).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from ...billing import ledger
from ...billing.accounts import rowcount
from ...db.models import GpuLease, GpuSlot, new_id
from ...exceptions import Conflict
from .devices import GpuDevice

# How many ended leases GET /api/ecode/gpus shows.
RECENT_ENDED = 10


class GpuUnavailable(Conflict):
    """No device is free for a kernel that asked for one (409)."""

    code = "gpu_unavailable"


def sync_slots(session: Session, host: str, devices: Sequence[GpuDevice], now: datetime) -> None:
    """Make the host's rows match its devices now: new ones added, gone ones not leasable."""
    known = {
        row.device_id: row for row in session.scalars(select(GpuSlot).where(GpuSlot.host == host))
    }
    for device in devices:
        row = known.pop(device.id, None)
        if row is None:
            session.add(GpuSlot(host=host, device_id=device.id, name=device.name, seen_at=now))
        else:
            row.name, row.present, row.seen_at = device.name, True, now
    for row in known.values():
        row.present = False


def holder_alive(holder: str, host: str) -> bool:
    """Whether the server process named by ``holder`` ("host:pid:start") still runs here."""
    try:
        holder_host, pid, start = holder.rsplit(":", 2)
    except ValueError:
        return False
    if holder_host != host:
        return True  # another machine's: not ours to judge
    return process_start(int(pid)) == start


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks after boot), or None when it is gone:
    with the pid it names one process for good, where a pid alone is reused."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # Fields after the command name, which may itself hold spaces or parentheses.
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def this_holder(host: str) -> str:
    return f"{host}:{os.getpid()}:{process_start(os.getpid()) or 0}"


def sweep(
    session: Session, host: str, holder: str, live_kernels: Iterable[str], now: datetime
) -> list[GpuLease]:
    """End the host's open leases that no kernel holds any more: those of a server that is
    gone (it crashed or restarted: its kernels died with it) and this server's own whose
    kernel it no longer has. Their open credit holds are let go without a charge (the time
    since the last settlement is unknown). Then recount every device's holders."""
    live = set(live_kernels)
    ended: list[GpuLease] = []
    open_leases = session.scalars(
        select(GpuLease).where(GpuLease.host == host, GpuLease.ended_at.is_(None))
    ).all()
    for lease in open_leases:
        if lease.holder == holder:
            if lease.kernel_id in live:
                continue
            reason = "kernel gone"
        elif holder_alive(lease.holder, host):
            continue  # a neighbouring server on this host, still running
        else:
            reason = "server restarted"
        lease.ended_at, lease.end_reason = now, reason
        if lease.reservation_id is not None:
            ledger.release(
                session, reservation_id=lease.reservation_id, reason=f"gpu lease: {reason}", now=now
            )
            lease.reservation_id = None
        ended.append(lease)
    session.flush()
    # Holders from the truth (the open leases), whatever a crash left in the counters.
    still_open = (
        select(func.count())
        .where(
            GpuLease.host == GpuSlot.host,
            GpuLease.device_id == GpuSlot.device_id,
            GpuLease.ended_at.is_(None),
        )
        .scalar_subquery()
    )
    session.execute(update(GpuSlot).where(GpuSlot.host == host).values(holders=still_open))
    return ended


def acquire(
    session: Session,
    *,
    host: str,
    holder: str,
    devices: Sequence[GpuDevice],
    count: int,
    most: int,
    kernel_id: str,
    project_id: str,
    username: str,
    now: datetime,
) -> tuple[str, list[GpuDevice]]:
    """Take ``count`` devices for a kernel (least shared first), or raise GpuUnavailable
    and change nothing. Returns the lease group id and the devices taken."""
    by_id = {device.id: device for device in devices}
    candidates = session.execute(
        select(GpuSlot.device_id)
        .where(GpuSlot.host == host, GpuSlot.present.is_(True), GpuSlot.holders < most)
        .order_by(GpuSlot.holders, GpuSlot.device_id)
    ).scalars()
    conn = session.connection()
    taken: list[GpuDevice] = []
    for device_id in candidates:
        if device_id not in by_id:
            continue
        claim = (
            update(GpuSlot)
            .where(GpuSlot.host == host, GpuSlot.device_id == device_id, GpuSlot.holders < most)
            .values(holders=GpuSlot.holders + 1)
        )
        if rowcount(conn.execute(claim)):
            taken.append(by_id[device_id])
            if len(taken) == count:
                break
    if len(taken) < count:
        total = len(devices)
        if total == 0:
            msg = (
                "this server has no GPUs to lease (none in c.EcodeApp.gpu_devices, and "
                "nvidia-smi -L found none)"
            )
        else:
            what = "is" if total == 1 else "are"
            msg = (
                f"no GPU is free: this kernel asked for {count} and {len(taken)} of the "
                f"server's {total} {what} free now; shut down a kernel that holds one "
                "(GET /api/ecode/gpus lists yours) or try again later"
            )
        raise GpuUnavailable(msg, wanted=count, free=len(taken), total=total)
    group_id = new_id()
    for device in taken:
        session.add(
            GpuLease(
                group_id=group_id,
                host=host,
                device_id=device.id,
                device_name=device.name,
                kernel_id=kernel_id,
                project_id=project_id,
                username=username,
                holder=holder,
                started_at=now,
            )
        )
    return group_id, taken


def set_reservation(session: Session, group_id: str, reservation_id: str | None) -> None:
    session.execute(
        update(GpuLease)
        .where(GpuLease.group_id == group_id, GpuLease.ended_at.is_(None))
        .values(reservation_id=reservation_id)
    )


def add_billed(session: Session, group_id: str, ms: int, costs: dict[str, int]) -> None:
    """Record a settled slice on the group's rows: its time on each, its cost by device."""
    for lease in session.scalars(select(GpuLease).where(GpuLease.group_id == group_id)):
        lease.billed_ms += ms
        lease.cost_micros += costs.get(lease.device_id, 0)


def end_group(session: Session, group_id: str, reason: str, now: datetime) -> int:
    """End a kernel's leases once (a second call ends nothing) and free their places."""
    leases = session.scalars(
        select(GpuLease).where(GpuLease.group_id == group_id, GpuLease.ended_at.is_(None))
    ).all()
    for lease in leases:
        lease.ended_at, lease.end_reason, lease.reservation_id = now, reason[:64], None
        session.execute(
            update(GpuSlot)
            .where(
                GpuSlot.host == lease.host,
                GpuSlot.device_id == lease.device_id,
                GpuSlot.holders > 0,
            )
            .values(holders=GpuSlot.holders - 1)
        )
    return len(leases)


def lease_json(lease: GpuLease, now: datetime) -> dict[str, Any]:
    end = lease.ended_at or now
    return {
        "id": lease.id,
        "device": lease.device_id,
        "name": lease.device_name,
        "kernel_id": lease.kernel_id,
        "project_id": lease.project_id,
        "user": lease.username,
        "started_at": lease.started_at.isoformat(),
        "ended_at": lease.ended_at.isoformat() if lease.ended_at else None,
        "end_reason": lease.end_reason,
        "seconds": round(max(0.0, (end - lease.started_at).total_seconds()), 3),
        "billed_seconds": lease.billed_ms / 1000,
        "cost_micros": lease.cost_micros,
    }


def host_view(session: Session, host: str) -> tuple[list[GpuSlot], list[GpuLease]]:
    slots = session.scalars(
        select(GpuSlot)
        .where(GpuSlot.host == host, GpuSlot.present.is_(True))
        .order_by(GpuSlot.device_id)
    ).all()
    leases = session.scalars(
        select(GpuLease)
        .where(GpuLease.host == host, GpuLease.ended_at.is_(None))
        .order_by(GpuLease.started_at, GpuLease.device_id)
    ).all()
    return list(slots), list(leases)


def recent_ended(
    session: Session, host: str, username: str | None, limit: int = RECENT_ENDED
) -> list[GpuLease]:
    """The host's latest ended leases (``username``'s, or everybody's for None), newest
    first: how a user finds out why their GPU kernel went away (``out_of_credits``)."""
    query = select(GpuLease).where(GpuLease.host == host, GpuLease.ended_at.is_not(None))
    if username is not None:
        query = query.where(GpuLease.username == username)
    return list(session.scalars(query.order_by(GpuLease.ended_at.desc()).limit(limit)))


def project_leases(session: Session, project_id: str) -> list[GpuLease]:
    return list(
        session.scalars(
            select(GpuLease)
            .where(and_(GpuLease.project_id == project_id, GpuLease.ended_at.is_(None)))
            .order_by(GpuLease.started_at, GpuLease.device_id)
        )
    )


def kernel_leases(session: Session, kernel_id: str) -> list[GpuLease]:
    """Every lease a kernel ever had, oldest first (history included)."""
    return list(
        session.scalars(
            select(GpuLease).where(GpuLease.kernel_id == kernel_id).order_by(GpuLease.started_at)
        )
    )
