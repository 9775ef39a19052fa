"""Paying for a run's model calls: reserve before, settle after, release on failure.

With the billing concern installed (``ctx.extras["billing"]``) every model call reserves
credits first (``InsufficientCredits`` stops the run before the call), settles to the usage the
provider reported (a cut stream settles what it had reported), and releases the reservation
when the call produced no usage. Without billing, calls cost nothing and only the usage is
kept. Either way the run's row accumulates tokens and cost: the loop records them with the
call's ``usage`` event (one transaction); a call cut short by cancellation records them here.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from ..db import Database
from .providers.base import Usage
from .store import add_usage

log = logging.getLogger(__name__)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Metering:
    """The billing path of one run."""

    def __init__(
        self,
        billing: Any | None,
        db: Database,
        *,
        run_id: str,
        username: str,
        project_id: str,
        model: str,
    ) -> None:
        self.billing = billing
        self.db = db
        self.run_id = run_id
        self.username = username
        self.project_id = project_id
        self.model = model
        self.usage = Usage()
        self.cost_micros = 0

    async def check_model(self) -> None:
        """Refuse a model billing has no price for, before anything runs."""
        if self.billing is not None and hasattr(self.billing, "check_model"):
            await _maybe_await(self.billing.check_model(self.model))

    async def reserve(self, key: str, input_tokens_estimate: int, max_output_tokens: int) -> Any:
        """A reservation for one model call (None without billing); raises InsufficientCredits."""
        if self.billing is None:
            return None
        return await _maybe_await(
            self.billing.reserve(
                user=self.username,
                project_id=self.project_id,
                run_id=self.run_id,
                model=self.model,
                input_tokens_estimate=input_tokens_estimate,
                max_output_tokens=max_output_tokens,
                key=key,
            )
        )

    async def settle(self, reservation: Any, usage: Usage, key: str) -> int:
        """Charge ``usage`` against the reservation; returns the cost.

        The caller records usage and cost on the run (with the ``usage`` event).
        """
        cost = 0
        if self.billing is not None and reservation is not None:
            cost = int(await _maybe_await(self.billing.settle(reservation, usage, key=key)) or 0)
        self.usage = self.usage + usage
        self.cost_micros += cost
        return cost

    async def release(self, reservation: Any, reason: str) -> None:
        if self.billing is None or reservation is None:
            return
        try:
            await _maybe_await(self.billing.release(reservation, reason=reason))
        except Exception:
            # An unreleased reservation expires and is reconciled by billing; don't mask the
            # error that brought us here.
            log.exception("releasing a reservation of run %s failed", self.run_id)

    async def finish_call(self, reservation: Any, usage: Usage, key: str, reason: str) -> int:
        """End a call that failed or was cancelled: settle what it used, else release."""
        if usage.is_zero:
            await self.release(reservation, reason)
            return 0
        try:
            return await self.settle(reservation, usage, key)
        except Exception:
            log.exception("settling the partial usage of run %s failed", self.run_id)
            await self.release(reservation, reason)
            return 0

    async def finish_cancelled_call(
        self, reservation: Any, usage: Usage, key: str, reason: str
    ) -> None:
        """End a call cut by cancellation: settle or release, and record the usage on the run
        (no event: the run is ending). Completes even while the task is being cancelled."""

        async def finish() -> None:
            cost = await self.finish_call(reservation, usage, key, reason)
            if not usage.is_zero:
                await self.db.run(lambda s: add_usage(s, self.run_id, usage, cost))

        task = asyncio.ensure_future(finish())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise
