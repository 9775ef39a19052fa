"""`jupyter ecode credits`: my balance and where it went; `--grant USER AMOUNT` for admins.

The numbers come from the same ``BillingManager`` calls as ``GET billing/account`` and
``GET billing/usage``, so the shell, REST and ``%ecode credits`` always agree.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, cast

from rich.console import Console
from rich.table import Table

from ..billing import BillingManager, credits_to_micros
from ..billing.reports import GROUPS, usage_total
from . import remote
from .config import cli_user, open_context


def register(subs: Any) -> None:
    p = subs.add_parser("credits", help="credit balance and usage; admins grant credits")
    p.add_argument(
        "--group", choices=GROUPS, default="model", help="usage grouped by (default: model)"
    )
    p.add_argument(
        "--grant",
        nargs=2,
        metavar=("USER", "AMOUNT"),
        help="admins: give USER AMOUNT credits (e.g. 10 or 2.5)",
    )
    p.add_argument("--note", default="", help="with --grant: why (kept in the ledger)")
    p.add_argument("--key", help="with --grant: idempotency key, so a retry grants once")
    p.set_defaults(handler=_credits)


def _account_table(account: dict[str, Any]) -> Table:
    table = Table("", "credits", title=f"credits of {account['user']}")
    table.add_row("balance", account["balance"])
    table.add_row("reserved (calls in flight)", account["reserved"])
    table.add_row("available", account["available"])
    allowance = account["allowance"]
    table.add_row("monthly allowance", allowance["monthly"])
    table.add_row("allowance left this month", allowance["left"])
    table.add_row(f"spent in {account['month']['period']}", account["month"]["spent"])
    user_budget = account["budgets"]["user"]
    if user_budget is not None and user_budget["limit"] is not None:
        table.add_row(f"budget ({user_budget['period']}) left", user_budget["left"])
    for budget in account["budgets"]["projects"]:
        if budget["limit"] is not None:
            table.add_row(f"project {budget['name']} budget left", budget["left"])
    return table


def _usage_table(group: str, rows: list[dict[str, Any]], total: dict[str, Any]) -> Table:
    # Calls that cost more than could be charged (holds were once too short) get a column.
    uncharged = total["uncharged_micros"] > 0
    columns = ["calls", "input", "output", "cache read", "cache write", "credits"]
    table = Table(
        group, *columns, *(["not charged"] if uncharged else []), title=f"usage by {group}"
    )
    for row in [*rows, {**total, "label": "total"}]:
        table.add_row(
            row["label"] or "-",
            str(row["calls"]),
            str(row["input_tokens"]),
            str(row["output_tokens"]),
            str(row["cache_read_tokens"]),
            str(row["cache_write_tokens"]),
            row["cost"],
            *([row["uncharged"]] if uncharged else []),
        )
    return table


def _show_remote(client: Any, args: argparse.Namespace, console: Console) -> int:
    data = remote.credits_data(client, args)
    if args.json:
        console.print_json(json.dumps(data))
        return 0
    if "grant" in data:
        granted = data["grant"]
        console.print(f"granted {granted['entry']['amount']} credits to {args.grant[0]}")
        console.print(_account_table(granted["account"]))
        return 0
    usage = data["usage"]
    console.print(_account_table(data["account"]))
    console.print(_usage_table(args.group, usage["rows"], usage["total"]))
    return 0


async def _credits(args: argparse.Namespace, console: Console) -> int:
    server = remote.remote_server(args)
    if server is not None:
        return remote.run_remote(server, console, lambda c: _show_remote(c, args, console))
    ctx = open_context(args)
    try:
        billing = cast(BillingManager, ctx.extras["billing"])
        user = cli_user(args, ctx)
        if args.grant:
            target, amount = args.grant
            entry, created = await billing.grant(
                user,
                username=target,
                amount_micros=credits_to_micros(amount),
                note=args.note,
                key=args.key,
            )
            account = await billing.account_summary(target)
            if args.json:
                console.print_json(json.dumps({"entry": entry, "account": account}))
            else:
                verb = "granted" if created else "already granted (same key)"
                console.print(f"{verb} {entry['amount']} credits to {target}")
                console.print(_account_table(account))
            return 0
        account = await billing.account_summary(user)
        rows = await billing.usage(user.username, group=args.group)
        total = usage_total(rows)
        if args.json:
            usage = {"user": user.username, "group": args.group, "rows": rows, "total": total}
            console.print_json(json.dumps({"account": account, "usage": usage}))
            return 0
        console.print(_account_table(account))
        console.print(_usage_table(args.group, rows, total))
        return 0
    finally:
        ctx.db.dispose()
