"""GpuLeases: which kernel holds which GPU, for how long, paid for in credits.

Who calls what:

* the ecode provisioner (``kernels/provisioner.py``): ``acquire`` in ``pre_launch`` when a
  kernel asks for GPUs (``KERNEL_ECODE_GPUS``), ``watch`` once its process runs, ``stopping``
  when a shutdown or restart is on its way (a process that then ends is no crash), and
  ``release`` in ``cleanup`` — not on a restart: the kernel keeps its devices;
* the server: ``start`` at start-up (device rows synced, leases no kernel holds any more
  ended: those of a server that crashed or restarted), ``run_forever`` (metering and the
  crash watch), ``close`` before the database closes;
* REST: ``snapshot`` (``GET /api/ecode/gpus``) and ``project_leases`` (a project's model).

Metering, the way model calls are billed (``billing/``): a lease holds credits for the next
slice of GPU time before it runs (``gpu_billing_slice_s``); at the end of each slice the
milliseconds used are settled at ``c.EcodeApp.gpu_prices`` and the next slice is held. A
charge is never more than its hold, so a lease cannot overspend. When the next hold is
refused the kernel is shut down and the lease ends with reason ``out_of_credits``: a log
line, a ``gpu_lease`` event on the server's event bus, and the lease's row say so.

A kernel whose process ends by itself (a crash, an out-of-memory kill) loses its lease at
the next check; if the server's restarter brings the kernel back, it asks again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...billing import BillingManager, Reservation
from ...billing.prices import GpuPrices, format_credits
from ...db import Database
from ...db.models import utcnow
from ...exceptions import InsufficientCredits, InvalidInput
from ...identity import EcodeUser
from . import store
from .devices import GpuDevice

log = logging.getLogger(__name__)

SCHEMA_ID = "https://events.jupyter.org/ecode_jupyter/gpu_lease/v1"
SCHEMA_PATH = Path(__file__).parent / "event_schemas" / "gpu_lease" / "v1.yaml"
# The hold covers this much more than a slice, so a check that runs a little late (a busy
# loop) is still paid for in full.
HOLD_FACTOR = 1.5
# Most often the crash watch looks at a lease's process.
MAX_CHECK_INTERVAL_S = 5.0
MAX_GPUS_PER_KERNEL = 64
# A kernel whose stop or restart was asked for and whose process is still gone this long
# after (a restart that failed) has died: its lease ends.
STOP_GRACE_S = 30.0

Stopper = Callable[[], Awaitable[Any] | Any]
# A settled slice: its milliseconds and its charge by device.
Billed = tuple[int, dict[str, int]]


@dataclass
class KernelLease:
    """The devices one kernel holds and the state of its metering (memory of this server)."""

    group_id: str
    kernel_id: str
    project_id: str
    username: str
    devices: tuple[GpuDevice, ...]
    prices: tuple[int, ...]  # micro-credits per hour of each device
    slice_started: float
    reservation: Reservation | None = None
    slice_no: int = 0
    billed_ms: int = 0
    cost_micros: int = 0
    alive: Callable[[], bool] | None = None
    stop: Stopper | None = None
    stopping_since: float | None = None
    ended: bool = False
    end_reason: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def per_hour_micros(self) -> int:
        return sum(self.prices)

    @property
    def what(self) -> str:
        """The ledger's model column for this lease's charges."""
        names = sorted({device.name for device in self.devices})
        return f"gpu:{names[0]}" if len(names) == 1 else "gpu:mixed"

    @property
    def device_ids(self) -> list[str]:
        return [device.id for device in self.devices]


def requested_gpus(value: str | None) -> int:
    """The number of GPUs a kernel start asks for (``KERNEL_ECODE_GPUS``)."""
    if value is None or not value.strip():
        return 0
    try:
        count = int(value.strip())
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_GPUS_PER_KERNEL:
        msg = f"KERNEL_ECODE_GPUS must be a whole number of GPUs, 0 to {MAX_GPUS_PER_KERNEL}"
        raise InvalidInput(msg)
    return count


class GpuLeases:
    """See the module docstring. One per server; every method runs on the server's loop."""

    def __init__(
        self,
        db: Database,
        billing: BillingManager | None,
        devices: Sequence[GpuDevice],
        *,
        sharers: int = 1,
        slice_s: float = 60.0,
        host: str | None = None,
        event_logger: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sharers < 1:
            msg = "gpu_sharers must be 1 (exclusive) or more"
            raise InvalidInput(msg)
        if slice_s <= 0:
            msg = "gpu_billing_slice_s must be more than 0"
            raise InvalidInput(msg)
        self.db = db
        self.billing = billing
        self.devices = tuple(devices)
        self.sharers = sharers
        self.slice_s = slice_s
        self.host = host or socket.gethostname()
        self.holder = store.this_holder(self.host)
        self.prices = billing.gpu_prices if billing is not None else GpuPrices({"default": 0})
        self.clock = clock
        self.active: dict[str, KernelLease] = {}
        self._started: asyncio.Task[None] | None = None
        self._events = event_logger
        if event_logger is not None:
            event_logger.register_event_schema(SCHEMA_PATH)

    # -- start-up and the server's loop ---------------------------------------------------
    async def start(self) -> None:
        """Sync the device rows and end leases no kernel holds any more (once)."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        now = utcnow()

        def tx(session: Any) -> list[Any]:
            store.sync_slots(session, self.host, self.devices, now)
            return store.sweep(session, self.host, self.holder, self.active, now)

        ended = await self.db.run(tx)
        for lease in ended:
            log.info(
                "GPU lease of kernel %s on %s ended at start-up: %s",
                lease.kernel_id,
                lease.device_id,
                lease.end_reason,
            )
        if self.devices:
            log.info("GPUs to lease on %s: %s", self.host, ", ".join(d.name for d in self.devices))

    @property
    def check_interval_s(self) -> float:
        return min(self.slice_s, MAX_CHECK_INTERVAL_S)

    async def run_forever(self) -> None:
        """Settle slices and watch for crashed kernels, until cancelled."""
        await self.start()
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("metering GPU leases failed")
            await asyncio.sleep(self.check_interval_s)

    async def check(self) -> None:
        """One round: leases of dead kernels end, full slices are settled."""
        out_of_credits: list[KernelLease] = []
        for lease in list(self.active.values()):
            if lease.ended:
                continue
            if lease.alive is not None and self._dead(lease):
                log.warning(
                    "kernel %s of project %s died holding GPU(s) %s: lease released",
                    lease.kernel_id,
                    lease.project_id,
                    ", ".join(lease.device_ids),
                )
                await self.release(lease.kernel_id, "kernel died")
                continue
            if self.clock() - lease.slice_started >= self.slice_s:
                async with lease.lock:
                    if not lease.ended and not await self._next_slice(lease):
                        out_of_credits.append(lease)
        for lease in out_of_credits:
            await self._end_for_credits(lease)

    def _dead(self, lease: KernelLease) -> bool:
        assert lease.alive is not None
        # Stopping on purpose: its process ending is no crash, unless it never came back.
        since = lease.stopping_since
        if since is not None and self.clock() - since < STOP_GRACE_S:
            return False
        return not lease.alive()

    async def close(self) -> None:
        """Before the database closes (server stop): stop the GPU kernels, end their leases."""
        for lease in list(self.active.values()):
            lease.end_reason = lease.end_reason or "server stopped"
            await self._stop_kernel(lease)
            await self.release(lease.kernel_id, "server stopped")

    # -- a kernel's leases (the provisioner) ----------------------------------------------
    async def acquire(
        self, kernel_id: str, project_id: str, user: EcodeUser | str, count: int
    ) -> KernelLease:
        """Lease ``count`` devices for a kernel and hold the first slice of credits; raises
        GpuUnavailable (409) or InsufficientCredits (402) and holds nothing then."""
        await self.start()
        held = self.active.get(kernel_id)
        if held is not None and not held.ended:
            return held  # a restart keeps what the kernel had
        username = user.username if isinstance(user, EcodeUser) else str(user)
        now = utcnow()

        def tx(session: Any) -> tuple[str, list[GpuDevice]]:
            return store.acquire(
                session,
                host=self.host,
                holder=self.holder,
                devices=self.devices,
                count=count,
                most=self.sharers,
                kernel_id=kernel_id,
                project_id=project_id,
                username=username,
                now=now,
            )

        group_id, taken = await self.db.run(tx)
        lease = KernelLease(
            group_id=group_id,
            kernel_id=kernel_id,
            project_id=project_id,
            username=username,
            devices=tuple(taken),
            prices=tuple(self.prices.per_hour_micros(d.price_keys()) for d in taken),
            slice_started=self.clock(),
        )
        self.active[kernel_id] = lease
        try:
            lease.reservation = await self._hold(lease)
        except BaseException:
            await self.release(kernel_id, "no credits for the first slice")
            raise
        log.info(
            "kernel %s of project %s leased GPU(s) %s",
            kernel_id,
            project_id,
            ", ".join(lease.device_ids),
        )
        self._emit(lease, "acquired", None)
        return lease

    def watch(self, kernel_id: str, alive: Callable[[], bool], stop: Stopper) -> None:
        """The kernel's process runs: how to tell whether it still does, how to stop it."""
        lease = self.active.get(kernel_id)
        if lease is not None:
            lease.alive, lease.stop, lease.stopping_since = alive, stop, None

    def stopping(self, kernel_id: str) -> None:
        """A shutdown or restart was asked for: its process ending is no crash."""
        lease = self.active.get(kernel_id)
        if lease is not None and lease.stopping_since is None:
            lease.stopping_since = self.clock()

    async def release(self, kernel_id: str, reason: str) -> None:
        """End a kernel's leases: settle the slice so far, free the devices. Idempotent."""
        lease = self.active.get(kernel_id)
        if lease is None:
            return
        async with lease.lock:
            if lease.ended:
                return
            lease.ended = True
            reason = lease.end_reason or reason
            lease.end_reason = reason
            billed: Billed | None = None
            try:
                billed = await self._settle(lease)
            except Exception:
                # The hold expires and is swept (billing's reservation_ttl_s).
                log.exception("settling the GPU time of kernel %s failed", kernel_id)
            now = utcnow()

            def end(session: Any) -> None:
                # The last slice's record and the end in one transaction.
                if billed is not None:
                    store.add_billed(session, lease.group_id, *billed)
                store.end_group(session, lease.group_id, reason, now)

            try:
                await self.db.run(end)
            except Exception:
                log.exception(
                    "ending the GPU lease of kernel %s failed; the next start-up ends it",
                    kernel_id,
                )
        if self.active.get(kernel_id) is lease:
            del self.active[kernel_id]
        log.info(
            "kernel %s released GPU(s) %s: %s (%.1f GPU-seconds, %s credits)",
            kernel_id,
            ", ".join(lease.device_ids),
            reason,
            lease.billed_ms * len(lease.devices) / 1000,
            format_credits(lease.cost_micros),
        )
        self._emit(lease, "released", reason)

    # -- metering ---------------------------------------------------------------------------
    async def _hold(self, lease: KernelLease) -> Reservation | None:
        """Hold credits for the lease's next slice (one and a half, see HOLD_FACTOR)."""
        if self.billing is None:
            return None
        hold_ms = int(self.slice_s * HOLD_FACTOR * 1000)
        amount = GpuPrices.cost(lease.per_hour_micros, hold_ms)
        try:
            reservation = await self.billing.reserve_micros(
                user=lease.username,
                project_id=lease.project_id,
                what=lease.what,
                amount_micros=amount,
                key=f"gpu:{lease.group_id}:{lease.slice_no}",
            )
        except InsufficientCredits as exc:
            available = exc.details.get("available_micros")
            msg = (
                f"out of credits for GPU time: {len(lease.devices)} GPU(s) "
                f"({', '.join(sorted({d.name for d in lease.devices}))}) cost "
                f"{format_credits(lease.per_hour_micros)} credits per hour, and the next "
                f"{self.slice_s:g} s need {format_credits(amount)} held ahead"
                + (
                    f" with {format_credits(int(available))} available"
                    if available is not None
                    else ""
                )
                + "; ask an admin for credits"
            )
            raise InsufficientCredits(msg, **exc.details) from exc
        await self.db.run(lambda s: store.set_reservation(s, lease.group_id, reservation.id))
        return reservation

    async def _settle(self, lease: KernelLease) -> Billed | None:
        """Charge the slice so far (capped at its hold); returns what to record on the lease
        rows (None when nothing was held)."""
        now = self.clock()
        ms = max(0, int((now - lease.slice_started) * 1000))
        reservation = lease.reservation
        if reservation is None:
            # Nothing held (billing off, or a hold that failed): nothing to charge.
            lease.slice_started = now
            return None
        assert self.billing is not None
        cost = GpuPrices.cost(lease.per_hour_micros, ms)
        if cost > reservation.amount_micros:
            # A check far later than its slice (a blocked loop): the hold is all a lease
            # may spend, what ran past it is the operator's loss, not the user's debt.
            log.warning(
                "GPU lease of kernel %s: %d ms used, %d held; charging the hold",
                lease.kernel_id,
                ms,
                int(self.slice_s * HOLD_FACTOR * 1000),
            )
            cost = reservation.amount_micros
        charged = await self.billing.settle_micros(
            reservation,
            cost,
            key=f"gpu:{lease.group_id}:{lease.slice_no}",
            details={
                "kernel_id": lease.kernel_id,
                "devices": lease.device_ids,
                "gpu_seconds": ms * len(lease.devices) / 1000,
            },
        )
        # Only now: a settlement that failed is retried at the next check with the same key
        # (idempotent), over the longer time, still within the hold.
        lease.reservation, lease.slice_started = None, now
        lease.slice_no += 1
        lease.billed_ms += ms
        lease.cost_micros += charged
        return ms, _split(charged, lease)

    async def _next_slice(self, lease: KernelLease) -> bool:
        """Settle the slice that ended and hold the next; False when credits ran out."""
        billed = await self._settle(lease)
        if billed is not None:
            await self.db.run(lambda s: store.add_billed(s, lease.group_id, *billed))
        try:
            lease.reservation = await self._hold(lease)
        except InsufficientCredits as exc:
            lease.end_reason = "out_of_credits"
            log.warning(
                "GPU lease of kernel %s (project %s, user %s) ends: %s",
                lease.kernel_id,
                lease.project_id,
                lease.username,
                exc.message,
            )
            return False
        return True

    async def _end_for_credits(self, lease: KernelLease) -> None:
        # The kernel goes first, so its devices are free only once nothing uses them.
        self._emit(lease, "ending", "out_of_credits")
        await self._stop_kernel(lease)
        await self.release(lease.kernel_id, "out_of_credits")

    async def _stop_kernel(self, lease: KernelLease) -> None:
        if lease.stop is None:
            return
        lease.stopping_since = self.clock()
        try:
            result = lease.stop()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("stopping kernel %s (GPU lease ending) failed", lease.kernel_id)

    # -- reading ----------------------------------------------------------------------------
    async def snapshot(self, user: EcodeUser) -> dict[str, Any]:
        """This host's devices and who holds them: an admin sees every lease, a user their
        own (a device another user holds shows only as taken); and the latest ended ones,
        with why they ended."""
        await self.start()
        now = utcnow()
        only = None if user.is_admin else user.username

        def read(session: Any) -> tuple[list[Any], list[Any], list[Any]]:
            slots, leases = store.host_view(session, self.host)
            return slots, leases, store.recent_ended(session, self.host, only)

        slots, leases, ended = await self.db.run(read)
        visible = [lease for lease in leases if user.is_admin or lease.username == user.username]
        by_device: dict[str, list[dict[str, Any]]] = {}
        for lease in visible:
            by_device.setdefault(lease.device_id, []).append(store.lease_json(lease, now))
        names = {device.id: device for device in self.devices}
        devices = []
        for slot in slots:
            device = names.get(slot.device_id)
            keys = device.price_keys() if device else (slot.name, "default")
            devices.append(
                {
                    "id": slot.device_id,
                    "name": slot.name,
                    "holders": slot.holders,
                    "free": slot.holders < self.sharers,
                    "credits_per_hour": format_credits(self.prices.per_hour_micros(keys)),
                    "leases": by_device.get(slot.device_id, []),
                }
            )
        return {
            "host": self.host,
            "exclusive": self.sharers == 1,
            "billing_slice_s": self.slice_s,
            "devices": devices,
            "leases": [store.lease_json(lease, now) for lease in visible],
            "ended": [store.lease_json(lease, now) for lease in ended],
        }

    async def project_leases(self, project_id: str) -> list[dict[str, Any]]:
        now = utcnow()
        leases = await self.db.run(lambda s: store.project_leases(s, project_id))
        return [store.lease_json(lease, now) for lease in leases]

    async def kernel_history(self, kernel_id: str) -> list[dict[str, Any]]:
        now = utcnow()
        leases = await self.db.run(lambda s: store.kernel_leases(s, kernel_id))
        return [store.lease_json(lease, now) for lease in leases]

    def _emit(self, lease: KernelLease, action: str, reason: str | None) -> None:
        if self._events is None:
            return
        try:
            self._events.emit(
                schema_id=SCHEMA_ID,
                data={
                    "action": action,
                    "reason": reason or "",
                    "kernel_id": lease.kernel_id,
                    "project_id": lease.project_id,
                    "user": lease.username,
                    "devices": lease.device_ids,
                    "gpu_seconds": lease.billed_ms * len(lease.devices) / 1000,
                    "cost_micros": lease.cost_micros,
                },
            )
        except Exception:  # a broken listener must not stop the lease's bookkeeping
            log.exception("emitting a gpu_lease event failed")


def _split(charged: int, lease: KernelLease) -> dict[str, int]:
    """A slice's charge shared between the lease's devices by their prices (whole
    micro-credits; the rounding remainder goes to the first device)."""
    total = lease.per_hour_micros
    if total <= 0 or not lease.devices:
        return {}
    shares = {
        d.id: charged * price // total for d, price in zip(lease.devices, lease.prices, strict=True)
    }
    first = lease.devices[0].id
    shares[first] += charged - sum(shares.values())
    return shares
