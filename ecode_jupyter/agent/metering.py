"""Paying for a run's model calls: reserve before, settle after, release on failure.

With the billing concern installed (``ctx.extras["billing"]``) every model call reserves
credits first (``InsufficientCredits`` stops the run before the call), settles to the usage the
provider reported (a cut stream settles what it had reported), and releases the reservation
when the call produced no usage. Without billing, calls cost nothing and only the usage is
kept. Either way the run's row accumulates tokens and cost: the loop records them with the
call's ``usage`` event (one transaction); a call cut short by cancellation records them here.
Before any of that, a call is counted against the user's ``model_calls`` rate limit
(``ratelimit.py``) when one is configured.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..billing.prices import format_credits
from ..db import Database
from ..exceptions import CostCapReached, InsufficientCredits, RateLimited
from .providers.base import Usage
from .store import add_usage

log = logging.getLogger(__name__)

# A model call refused by the rate limit for at most this long is waited for, up to this many
# times in a row (other runs of the same user may take the next window's calls first).
RATE_LIMIT_WAIT_S = 5
RATE_LIMIT_WAITS = 3


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
        rate_limit: Callable[[], Awaitable[None]] | None = None,
        cap_micros: int | None = None,
    ) -> None:
        self.billing = billing
        # The run's own cost cap: a call whose hold would take the run past it never starts.
        self.cap_micros = cap_micros
        # Counts one model call against the user's rate limit (RateLimiter.bind), or None.
        self.rate_limit = rate_limit
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

    async def admit_call(self) -> None:
        """Count one model call against the user's rate limit (``model_calls``).

        A refusal whose window ends within ``RATE_LIMIT_WAIT_S`` is waited out (the run goes
        on, a little slower); a longer one raises RateLimited, which ends the run as failed
        with reason ``rate_limited``: holding a run slot for a minute helps nobody, and the
        run can be continued once the window has passed.
        """
        if self.rate_limit is None:
            return
        for _ in range(RATE_LIMIT_WAITS):
            try:
                await self.rate_limit()
                return
            except RateLimited as exc:
                if exc.retry_after > RATE_LIMIT_WAIT_S:
                    raise
                wait = exc.retry_after
                log.info("run %s: model call rate-limited, waiting %d s", self.run_id, wait)
                await asyncio.sleep(wait)
        await self.rate_limit()

    async def reserve(
        self,
        key: str,
        input_tokens: int,
        max_output_tokens: int,
        *,
        recount: Callable[[], Awaitable[int | None]] | None = None,
    ) -> Any:
        """A reservation for one model call (None without billing), after counting the call
        against the rate limit; raises InsufficientCredits or RateLimited.

        ``input_tokens`` is an upper bound of the call's input; when a hold of that much is
        refused, ``recount`` (the provider's own count, which costs a round trip) may give a
        smaller exact figure, and the hold is tried once more with it.
        """
        await self.admit_call()
        if self.billing is None:
            return None
        try:
            held = await self._hold(key, input_tokens, max_output_tokens)
            if not self._over_cap(held):
                return held
            # Over the run's cap by the bound: the provider's exact count may fit.
            await self.release(held, "over the run's cost cap")
            error: Exception = self._cap_error(held)
        except InsufficientCredits as exc:
            error = exc
        counted = await recount() if recount is not None else None
        if counted is None or counted >= input_tokens:
            raise error
        log.info(
            "run %s: holding for %d input tokens as counted (bound %d)",
            self.run_id,
            counted,
            input_tokens,
        )
        held = await self._hold(key, counted, max_output_tokens)
        if self._over_cap(held):
            await self.release(held, "over the run's cost cap")
            raise self._cap_error(held)
        return held

    def _over_cap(self, held: Any) -> bool:
        amount = int(getattr(held, "amount_micros", 0) or 0)
        return bool(self.cap_micros) and self.cost_micros + amount > int(self.cap_micros or 0)

    def _cap_error(self, held: Any) -> CostCapReached:
        amount = int(getattr(held, "amount_micros", 0) or 0)
        msg = (
            f"stopped before the next model call: it could cost up to {format_credits(amount)} "
            f"credits, and the run has spent {format_credits(self.cost_micros)} of its cap of "
            f"{format_credits(int(self.cap_micros or 0))}; continue it with a higher max_credits"
        )
        return CostCapReached(
            msg,
            spent=format_credits(self.cost_micros),
            cap=format_credits(int(self.cap_micros or 0)),
            next_call_up_to=format_credits(amount),
        )

    async def _hold(self, key: str, input_tokens: int, max_output_tokens: int) -> Any:
        assert self.billing is not None
        return await _maybe_await(
            self.billing.reserve(
                user=self.username,
                project_id=self.project_id,
                run_id=self.run_id,
                model=self.model,
                input_tokens_estimate=input_tokens,
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
