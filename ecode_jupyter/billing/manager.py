"""BillingManager: credits around every model call, grants, budgets and reports.

Who calls what:

* the agent, around each model call: ``check_model`` when a run starts, ``reserve`` before the
  call (raises ``InsufficientCredits`` and the run stops with ``insufficient_credits``),
  ``settle`` with the provider's usage after it — also the partial usage of a stream that was
  cut — and ``release`` when the call failed before anything was billed; ``run_cost`` for a
  run's cost so far;
* the REST handlers (``handlers/billing.py``) and ``jupyter ecode credits``: ``account_summary``,
  ``usage``, ``prices``, ``grant``, ``refund``, ``set_budget``, ``set_allowance``, ``quote``;
* the server at start-up and then periodically: ``reconcile_expired`` releases reservations
  whose call never reported back (a crash), so held credits do not stay locked;
* GPU leases of project kernels (``kernels/gpus``): ``reserve_micros`` holds the next slice of
  GPU time ahead, ``settle_micros`` charges the seconds a slice used (same ledger, same
  guarantees: no overspend, one charge per key), ``gpu_prices`` prices them.

Amounts are integer micro-credits throughout; the JSON views add exact decimal strings.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..audit.log import record_audit
from ..db import Database
from ..db.models import utcnow
from ..exceptions import Forbidden, InsufficientCredits, InvalidInput
from ..identity import EcodeUser
from . import accounts, budgets, ledger, reports
from .accounts import next_month, period_of
from .ledger import Reservation
from .models import BudgetPeriod, BudgetScope, EntryKind
from .prices import (
    FREE,
    GpuPrices,
    PriceTable,
    UsageLike,
    credits_to_micros,
    format_credits,
    money,
)

log = logging.getLogger(__name__)

MAX_KEY_CHARS = 200
MAX_USERNAME_CHARS = 255


@dataclass(frozen=True)
class _Tokens:
    """Usage as stored: whole, non-negative token counts."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int

    @classmethod
    def of(cls, usage: UsageLike) -> _Tokens:
        return cls(
            *(
                max(0, int(getattr(usage, name)))
                for name in (
                    "input_tokens",
                    "output_tokens",
                    "cache_read_tokens",
                    "cache_write_tokens",
                )
            )
        )


def _username(user: EcodeUser | str) -> str:
    name = user.username if isinstance(user, EcodeUser) else str(user)
    if not name or len(name) > MAX_USERNAME_CHARS:
        msg = "a user name is 1 to 255 characters"
        raise InvalidInput(msg, field="user")
    return name


def _key(key: str, field: str = "key") -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        msg = f"{field} must be 1 to {MAX_KEY_CHARS} characters"
        raise InvalidInput(msg, field=field)
    return key


def _entry_json(session: Session, key: str) -> dict[str, Any] | None:
    entry = accounts.entry_by_key(session, key)
    return accounts.entry_to_json(entry) if entry is not None else None


def _require_admin(actor: EcodeUser) -> None:
    if not actor.is_admin:
        msg = "only an admin may do this"
        raise Forbidden(msg)


class BillingManager:
    def __init__(
        self,
        db: Database,
        prices: PriceTable,
        *,
        monthly_allowance_micros: int = 0,
        reservation_ttl_s: float = 1800.0,
        clock: Callable[[], datetime] = utcnow,
        gpu_prices: GpuPrices | None = None,
    ) -> None:
        if monthly_allowance_micros < 0:
            msg = "the monthly allowance cannot be negative"
            raise InvalidInput(msg)
        self.db = db
        self.prices = prices
        self.gpu_prices = gpu_prices or GpuPrices()
        self.monthly_allowance_micros = monthly_allowance_micros
        self.reservation_ttl = timedelta(seconds=reservation_ttl_s)
        # Tests move the clock to cross months and expire reservations.
        self.clock = clock

    # -- around a model call (the agent) ------------------------------------------------
    async def check_model(self, model: str) -> None:
        """Raise InvalidInput when ``model`` has no price and is not configured free."""
        self.prices.price(model)

    def estimate(self, model: str, input_tokens_estimate: int, max_output_tokens: int) -> int:
        """The most a call can cost: what ``reserve`` holds."""
        if input_tokens_estimate < 0 or max_output_tokens < 0:
            msg = "token counts cannot be negative"
            raise InvalidInput(msg)
        return self.prices.price(model).estimate(input_tokens_estimate, max_output_tokens)

    async def reserve(
        self,
        *,
        user: EcodeUser | str,
        project_id: str,
        run_id: str,
        model: str,
        input_tokens_estimate: int,
        max_output_tokens: int,
        key: str,
    ) -> Reservation:
        """Hold what the call may cost. Idempotent by ``key``: a retry gets the same hold.

        Raises InsufficientCredits (402) when the balance or a budget cannot cover it.
        """
        amount = self.estimate(model, input_tokens_estimate, max_output_tokens)
        return await self._hold(_username(user), project_id, run_id, model, amount, _key(key))

    async def _hold(
        self, username: str, project_id: str, run_id: str, model: str, amount: int, key: str
    ) -> Reservation:
        now = self.clock()

        def tx(session: Session) -> Reservation:
            return ledger.reserve(
                session,
                username=username,
                project_id=project_id or None,
                run_id=run_id or None,
                model=model,
                amount=amount,
                key=key,
                now=now,
                ttl=self.reservation_ttl,
                default_allowance=self.monthly_allowance_micros,
            )

        try:
            reservation = await self.db.run(tx)
        except IntegrityError:
            # The same key reserved concurrently: that reservation is this one.
            existing = await self.db.run(lambda s: ledger.reservation_by_key(s, key))
            if existing is None:
                raise
            return existing
        except InsufficientCredits:
            log.info("reservation refused for %s on %s: %s micro-credits", username, model, amount)
            raise
        log.debug("reserved %s for %s (run %s, %s)", amount, username, run_id, model)
        return reservation

    async def settle(self, reservation: Reservation, usage: UsageLike, *, key: str) -> int:
        """Charge the call's real usage, release the rest of the hold; returns the charge.

        Idempotent by ``key``. Works for partial usage (a stream cut after the provider
        billed tokens) and after the reservation expired. The charge never takes the balance
        below zero or a budget past its cap (see ``ledger``).
        """
        tokens = _Tokens.of(usage)
        try:
            cost = self.prices.price(reservation.model).cost(tokens)
        except InvalidInput:
            # The model lost its price since the call started (config change and restart):
            # charge what was held rather than nothing.
            log.warning("model %s has no price any more; charging its hold", reservation.model)
            cost = reservation.amount_micros
        # The provider never reported this call's tokens when they were estimated.
        estimated = bool(getattr(usage, "estimated", False))
        return await self._charge(reservation, cost, tokens, _key(key), estimated=estimated)

    async def _charge(
        self,
        reservation: Reservation,
        cost: int,
        tokens: _Tokens,
        key: str,
        *,
        estimated: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> int:
        now = self.clock()

        def tx(session: Session) -> int:
            return ledger.settle(
                session,
                reservation_id=reservation.id,
                cost=cost,
                usage=tokens,
                key=key,
                now=now,
                estimated=estimated,
                extra=extra,
            )

        try:
            return await self.db.run(tx)
        except IntegrityError:
            # The same report settled concurrently: return what that one charged.
            prior = await self.db.run(lambda s: accounts.entry_by_key(s, f"settlement:{key}"))
            if prior is None:
                raise
            return -prior.amount_micros

    async def release(self, reservation: Reservation, *, reason: str) -> None:
        """Let the hold go without a charge (the call failed or was cancelled). Idempotent."""
        now = self.clock()
        released = await self.db.run(
            lambda s: ledger.release(s, reservation_id=reservation.id, reason=reason, now=now)
        )
        if released:
            log.debug("released reservation %s: %s", reservation.id, reason)

    # -- metered resources (GPU time) -------------------------------------------------
    async def reserve_micros(
        self,
        *,
        user: EcodeUser | str,
        project_id: str,
        what: str,
        amount_micros: int,
        key: str,
    ) -> Reservation:
        """Hold ``amount_micros`` for a metered resource (``what``, e.g. "gpu:NVIDIA H200",
        is the ledger's model column). Idempotent by ``key``; raises InsufficientCredits."""
        if amount_micros < 0:
            msg = "a hold cannot be negative"
            raise InvalidInput(msg)
        return await self._hold(_username(user), project_id, "", what, amount_micros, _key(key))

    async def settle_micros(
        self,
        reservation: Reservation,
        cost_micros: int,
        *,
        key: str,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Charge what a metered resource used against its hold (never more than the hold
        and the free balance: see ``ledger.settle``); returns the charge. Idempotent."""
        no_tokens = _Tokens(0, 0, 0, 0)
        return await self._charge(
            reservation, max(0, cost_micros), no_tokens, _key(key), extra=details
        )

    async def run_cost(self, run_id: str) -> int:
        """What a run has been charged so far, net of refunds, in micro-credits."""
        return await self.db.run(lambda s: accounts.run_charges(s, run_id))

    # -- start-up and sweeps ------------------------------------------------------------
    async def reconcile_expired(self) -> int:
        """Release every reservation past its expiry; returns how many were released."""
        now = self.clock()
        released = 0
        while True:
            ids = await self.db.run(partial(ledger.expired_reservation_ids, now=now))
            for rid in ids:
                # One transaction each: a batch would lock many accounts in no fixed order.
                if await self.db.run(
                    partial(ledger.release, reservation_id=rid, reason="expired", now=now)
                ):
                    released += 1
            if len(ids) < ledger.EXPIRY_BATCH:
                break
        if released:
            log.info("released %d expired credit reservations", released)
        return released

    async def release_run_holds(self, run_id: str, *, reason: str) -> int:
        """Release every open reservation of a run that no process runs any more (it was
        interrupted by a crash): its call will never report, and waiting for the expiry
        would lock the credits for ``reservation_ttl_s``. A report that arrives after all
        still charges once (``ledger.settle``)."""
        now = self.clock()
        ids = await self.db.run(partial(ledger.open_reservation_ids_of_run, run_id=run_id))
        released = 0
        for rid in ids:
            if await self.db.run(
                partial(ledger.release, reservation_id=rid, reason=reason, now=now)
            ):
                released += 1
        if released:
            log.info("released %d credit reservations of interrupted run %s", released, run_id)
        return released

    async def sweep_forever(self, interval_s: float) -> None:
        """Reconcile now (start-up), then every ``interval_s`` seconds."""
        while True:
            try:
                await self.reconcile_expired()
            except Exception:
                log.exception("releasing expired credit reservations failed")
            await asyncio.sleep(interval_s)

    # -- admin: grants, refunds, budgets, allowances ------------------------------------
    async def grant(
        self,
        actor: EcodeUser,
        *,
        username: str,
        amount_micros: int,
        note: str = "",
        key: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Add credits to a user's account (admins only); idempotent by ``key``."""
        return await self._credit(
            actor,
            EntryKind.grant,
            username=username,
            amount_micros=amount_micros,
            note=note,
            key=key,
            run_id=None,
        )

    async def refund(
        self,
        actor: EcodeUser,
        *,
        username: str,
        run_id: str,
        amount_micros: int,
        note: str = "",
        key: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Give back up to what ``run_id`` cost ``username`` (admins only)."""
        return await self._credit(
            actor,
            EntryKind.refund,
            username=username,
            amount_micros=amount_micros,
            note=note,
            key=key,
            run_id=run_id,
        )

    async def _credit(
        self,
        actor: EcodeUser,
        kind: EntryKind,
        *,
        username: str,
        amount_micros: int,
        note: str,
        key: str | None,
        run_id: str | None,
    ) -> tuple[dict[str, Any], bool]:
        _require_admin(actor)
        username = _username(username)
        ledger_key = f"{kind.value}:{_key(key) if key else uuid.uuid4().hex}"
        now = self.clock()

        def tx(session: Session) -> tuple[dict[str, Any], bool]:
            entry, created = accounts.credit(
                session,
                username=username,
                amount=amount_micros,
                kind=kind,
                key=ledger_key,
                actor=actor.username,
                note=note,
                now=now,
                default_allowance=self.monthly_allowance_micros,
                run_id=run_id,
            )
            if created:
                record_audit(
                    session,
                    actor=actor.username,
                    action=f"credits.{kind.value}",
                    target_type="user",
                    target_id=username,
                    project_id=entry.project_id,
                    remote_ip=actor.remote_ip,
                    details={
                        "amount_micros": entry.amount_micros,
                        "key": ledger_key,
                        "run_id": run_id,
                    },
                )
            return accounts.entry_to_json(entry), created

        try:
            entry, created = await self.db.run(tx)
        except IntegrityError:
            # The same key granted concurrently: that grant is this one.
            prior = await self.db.run(partial(_entry_json, key=ledger_key))
            if prior is None:
                raise
            return prior, False
        if created:
            log.info(
                "%s: %s gave %s %s credits", kind.value, actor.username, username, entry["amount"]
            )
        return entry, created

    async def set_allowance(
        self, actor: EcodeUser, *, username: str, monthly_micros: int | None
    ) -> dict[str, Any]:
        """A user's monthly allowance (None: the configured default), from next month on."""
        _require_admin(actor)
        username = _username(username)
        if monthly_micros is not None and monthly_micros < 0:
            msg = "the monthly allowance cannot be negative"
            raise InvalidInput(msg, field="monthly_allowance")
        now = self.clock()

        def tx(session: Session) -> dict[str, Any]:
            last_period = accounts.set_allowance(session, username, monthly_micros, now)
            record_audit(
                session,
                actor=actor.username,
                action="credits.allowance",
                target_type="user",
                target_id=username,
                remote_ip=actor.remote_ip,
                details={"monthly_allowance_micros": monthly_micros},
            )
            effective = (
                monthly_micros if monthly_micros is not None else self.monthly_allowance_micros
            )
            return {
                "user": username,
                **money(monthly_allowance=effective),
                "configured_default": monthly_micros is None,
                # An allowance already given this month stays; the new one applies next.
                "from_period": period_of(now)
                if last_period is None
                else period_of(next_month(now)),
            }

        return await self.db.run(tx)

    async def set_budget(
        self,
        actor: EcodeUser,
        *,
        scope: BudgetScope,
        subject: str,
        limit_micros: int | None,
        period: BudgetPeriod | None = None,
    ) -> dict[str, Any]:
        """Cap what a user or project may spend per period (None: no cap). Admins only."""
        _require_admin(actor)
        if limit_micros is not None and limit_micros < 0:
            msg = "a budget cannot be negative"
            raise InvalidInput(msg, field="budget")
        subject = _username(subject) if scope is BudgetScope.user else subject
        now = self.clock()

        def tx(session: Session) -> dict[str, Any]:
            budget = budgets.set_budget(
                session,
                scope=scope,
                subject=subject,
                limit_micros=limit_micros,
                period=period,
                actor=actor.username,
                now=now,
            )
            record_audit(
                session,
                actor=actor.username,
                action="credits.budget",
                target_type=scope.value,
                target_id=subject,
                project_id=subject if scope is BudgetScope.project else None,
                remote_ip=actor.remote_ip,
                details={"limit_micros": limit_micros, "period": budget["period"]},
            )
            return budget

        return await self.db.run(tx)

    # -- reading ------------------------------------------------------------------------
    def prices_json(self) -> dict[str, Any]:
        return {**self.prices.to_json(), "gpu_prices": self.gpu_prices.to_json()}

    async def account_summary(self, user: EcodeUser | str) -> dict[str, Any]:
        """Balance, holds, allowance, budgets and this month's spend of one user.

        What ``GET billing/account``, ``jupyter ecode credits`` and ``%ecode credits`` show.
        """
        username = _username(user)
        now = self.clock()
        return await self.db.run(
            partial(
                reports.account_summary,
                username=username,
                now=now,
                default_allowance=self.monthly_allowance_micros,
            )
        )

    async def usage(
        self,
        username: str | None,
        *,
        group: str = "model",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Calls, tokens and cost grouped by model, project, day or run."""
        if group not in reports.GROUPS:
            msg = f"group must be one of {', '.join(reports.GROUPS)}"
            raise InvalidInput(msg, field="group")
        return await self.db.run(
            lambda s: reports.usage_rows(
                s, username=username, group=group, since=since, until=until
            )
        )

    async def quote(
        self,
        user: EcodeUser | str,
        *,
        model: str,
        input_tokens_estimate: int,
        max_output_tokens: int,
        project_id: str | None = None,
    ) -> dict[str, Any]:
        """What a call may cost and whether it is affordable now (holds nothing).

        Raises InsufficientCredits, with the same details a reservation would, when not.
        """
        username = _username(user)
        amount = self.estimate(model, input_tokens_estimate, max_output_tokens)
        now = self.clock()

        def tx(session: Session) -> dict[str, Any]:
            accounts.ensure_account(session, username, now, self.monthly_allowance_micros)
            available = int(session.execute(accounts.AVAILABLE, {"u": username}).scalar() or 0)
            limit = "credits"
            tightest = budgets.headroom(session, username, project_id, now)
            if tightest is not None and tightest[0] < available:
                available, limit = tightest
            return {"available": available, "limit": limit}

        state = await self.db.run(tx)
        if amount > state["available"]:
            msg = (
                f"this model call may cost up to {format_credits(amount)} credits and "
                f"{format_credits(state['available'])} are available"
            )
            raise InsufficientCredits(
                msg,
                needed_micros=amount,
                available_micros=state["available"],
                limit=state["limit"],
            )
        return {
            "model": model,
            **money(estimate=amount, available=state["available"]),
            "free": self.prices.price(model) == FREE,
        }


def make_billing_manager(
    db: Database,
    *,
    model_prices: dict[str, Any],
    free_models: list[str],
    monthly_allowance: float,
    reservation_ttl_s: float,
    gpu_prices: dict[str, Any] | None = None,
) -> BillingManager:
    """The manager for ``c.EcodeApp``'s billing traits (server and CLI alike)."""
    return BillingManager(
        db,
        PriceTable(model_prices, free_models),
        monthly_allowance_micros=credits_to_micros(monthly_allowance, field="monthly_allowance"),
        reservation_ttl_s=reservation_ttl_s,
        gpu_prices=GpuPrices(gpu_prices),
    )
