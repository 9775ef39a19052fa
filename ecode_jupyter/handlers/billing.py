"""Credits: my account, usage (JSON or CSV), prices, quotes; admin grants and budgets."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..billing import BillingManager, credits_to_micros
from ..billing.models import BudgetPeriod, BudgetScope
from ..billing.reports import GROUPS, usage_csv, usage_total
from ..db.models import Role
from ..exceptions import Forbidden, InvalidInput
from .base import EcodeHandler

GRANT_FIELDS = {"user", "amount_micros", "credits", "note", "key", "kind", "run_id"}
BUDGET_FIELDS = {
    "user",
    "project_id",
    "budget",
    "budget_micros",
    "period",
    "monthly_allowance",
    "monthly_allowance_micros",
}


def _amount(body: dict[str, Any], name: str, *, required: bool) -> tuple[bool, int | None]:
    """``(present, micros)`` from ``<name>_micros`` (int) or ``<name>`` (credits); null = None."""
    micros_key = f"{name}_micros"
    if micros_key in body and name in body:
        msg = f"give {name} or {micros_key}, not both"
        raise InvalidInput(msg, field=name)
    if micros_key in body:
        value = body[micros_key]
        if value is None:
            return True, None
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"{micros_key} must be a whole number of micro-credits"
            raise InvalidInput(msg, field=micros_key)
        return True, value
    if name in body:
        value = body[name]
        return True, None if value is None else credits_to_micros(value, field=name)
    if required:
        msg = f"{name} (credits) or {micros_key} is required"
        raise InvalidInput(msg, field=name)
    return False, None


def _day_or_time(raw: str | None, field: str, *, end: bool = False) -> datetime | None:
    """``YYYY-MM-DD`` (an inclusive day) or an ISO timestamp, as an aware UTC datetime."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        msg = f"{field} must be a date (YYYY-MM-DD) or an ISO timestamp"
        raise InvalidInput(msg, field=field) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if end and len(raw) == 10:
        value += timedelta(days=1)
    return value


class BillingHandler(EcodeHandler):
    @property
    def billing(self) -> BillingManager:
        return cast(BillingManager, self.ecode.extras["billing"])

    def target_user(self) -> str:
        """The user asked about: yourself, or anyone for an admin (``?user=``)."""
        me = self.ecode_user
        other = self.get_query_argument("user", None)
        if other and other != me.username:
            if not me.is_admin:
                msg = "only an admin may look at another user's credits"
                raise Forbidden(msg)
            return other
        return me.username


class AccountHandler(BillingHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish_json(await self.billing.account_summary(self.target_user()))


class UsageHandler(BillingHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        group = self.get_query_argument("group", "model")
        if group not in GROUPS:
            msg = f"group must be one of {', '.join(GROUPS)}"
            raise InvalidInput(msg, field="group")
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("json", "csv"):
            msg = "format must be json or csv"
            raise InvalidInput(msg, field="format")
        # "*" lets an admin see everybody's usage at once.
        if self.get_query_argument("user", None) == "*":
            self.require_admin()
            username: str | None = None
        else:
            username = self.target_user()
        since = _day_or_time(self.get_query_argument("since", None), "since")
        until = _day_or_time(self.get_query_argument("until", None), "until", end=True)
        rows = await self.billing.usage(username, group=group, since=since, until=until)
        if fmt == "csv":
            # User names may hold any character; a header value must not.
            who = re.sub(r"[^A-Za-z0-9._-]", "_", username or "all")
            name = f"ecode-usage-{who}-by-{group}.csv"
            self.set_header("Content-Disposition", f'attachment; filename="{name}"')
            self.finish(usage_csv(rows), set_content_type="text/csv; charset=utf-8")
            return
        self.finish_json(
            {"user": username, "group": group, "rows": rows, "total": usage_total(rows)}
        )


class PricesHandler(BillingHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish_json(self.billing.prices_json())


class QuoteHandler(BillingHandler):
    """What a model call may cost and whether it is affordable now: 200, or 402."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        user = self.ecode_user
        project_id = body.get("project_id")
        if project_id is not None:
            # Budgets of a project are for its members only.
            await self.ecode.projects.project_context(user, str(project_id), need=Role.viewer)
        tokens = {}
        for name in ("input_tokens", "max_output_tokens"):
            value = body.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int):
                msg = f"{name} must be a whole number"
                raise InvalidInput(msg, field=name)
            tokens[name] = value
        if not isinstance(body.get("model"), str):
            msg = "model is required"
            raise InvalidInput(msg, field="model")
        quote = await self.billing.quote(
            user,
            model=body["model"],
            input_tokens_estimate=tokens["input_tokens"],
            max_output_tokens=tokens["max_output_tokens"],
            project_id=str(project_id) if project_id is not None else None,
        )
        self.finish_json(quote)


class GrantsHandler(BillingHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        actor = self.require_admin()
        body = self.json_body()
        unknown = set(body) - GRANT_FIELDS
        if unknown:
            msg = f"unknown fields: {', '.join(sorted(unknown))}"
            raise InvalidInput(msg)
        if not isinstance(body.get("user"), str):
            msg = "user is required"
            raise InvalidInput(msg, field="user")
        if ("credits" in body) == ("amount_micros" in body):
            msg = "give amount_micros (whole micro-credits) or credits"
            raise InvalidInput(msg, field="amount_micros")
        if "credits" in body:
            amount = credits_to_micros(body["credits"], field="credits")
        else:
            amount = body["amount_micros"]
            if isinstance(amount, bool) or not isinstance(amount, int):
                msg = "amount_micros must be a whole number of micro-credits"
                raise InvalidInput(msg, field="amount_micros")
        note, key = body.get("note", ""), body.get("key")
        if not isinstance(note, str) or (key is not None and not isinstance(key, str)):
            msg = "note and key are strings"
            raise InvalidInput(msg)
        kind = body.get("kind", "grant")
        if kind == "grant":
            entry, created = await self.billing.grant(
                actor, username=body["user"], amount_micros=amount, note=note, key=key
            )
        elif kind == "refund":
            entry, created = await self.billing.refund(
                actor,
                username=body["user"],
                run_id=str(body.get("run_id") or ""),
                amount_micros=amount,
                note=note,
                key=key,
            )
        else:
            msg = "kind must be grant or refund"
            raise InvalidInput(msg, field="kind")
        account = await self.billing.account_summary(body["user"])
        # A replayed key is answered with the first grant and 200, not a second grant.
        self.finish_json({"entry": entry, "account": account}, status=201 if created else 200)


class BudgetsHandler(BillingHandler):
    @web.authenticated
    @authorized
    async def put(self) -> None:
        actor = self.require_admin()
        body = self.json_body()
        unknown = set(body) - BUDGET_FIELDS
        if unknown:
            msg = f"unknown fields: {', '.join(sorted(unknown))}"
            raise InvalidInput(msg)
        user, project_id = body.get("user"), body.get("project_id")
        if (user is None) == (project_id is None) or not isinstance(user or project_id, str):
            msg = "name exactly one of user or project_id"
            raise InvalidInput(msg)
        period = None
        if body.get("period") is not None:
            try:
                period = BudgetPeriod(body["period"])
            except ValueError:
                msg = "period must be month or total"
                raise InvalidInput(msg, field="period") from None
        has_budget, budget = _amount(body, "budget", required=False)
        has_allowance, allowance = _amount(body, "monthly_allowance", required=False)
        if has_allowance and project_id is not None:
            msg = "a monthly allowance is for a user, not a project"
            raise InvalidInput(msg, field="monthly_allowance")
        if not has_budget and not has_allowance:
            msg = "give budget (credits, null for no cap) and/or monthly_allowance"
            raise InvalidInput(msg)
        result: dict[str, Any] = {}
        if has_allowance:
            result["allowance"] = await self.billing.set_allowance(
                actor, username=str(user), monthly_micros=allowance
            )
        if has_budget:
            scope = BudgetScope.user if user is not None else BudgetScope.project
            result["budget"] = await self.billing.set_budget(
                actor,
                scope=scope,
                subject=str(user or project_id),
                limit_micros=budget,
                period=period,
            )
        self.finish_json(result)


default_handlers = [
    (r"/api/ecode/billing/account", AccountHandler),
    (r"/api/ecode/billing/usage", UsageHandler),
    (r"/api/ecode/billing/prices", PricesHandler),
    (r"/api/ecode/billing/quote", QuoteHandler),
    (r"/api/ecode/billing/grants", GrantsHandler),
    (r"/api/ecode/billing/budgets", BudgetsHandler),
]
