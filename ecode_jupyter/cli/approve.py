"""`jupyter ecode approve RUN APPROVAL [--deny | --always]`: answer a run's approval request.

The ids are in the run's ``approval.requested`` event (the feed, ``%ecode``'s output). Works
on the database directly, as the configured owner or ``--user``, or through a server's API
(``--server``, or by itself in a hub user's environment); the run, wherever it runs, sees the
answer within its poll interval.
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote

from rich.console import Console

from ..agent.config import create_agent_manager
from . import remote
from .config import cli_user, load_app


def register(subs: Any) -> None:
    p = subs.add_parser("approve", help="answer a run's approval request (default: allow)")
    p.add_argument("run", help="the run's id")
    p.add_argument("approval", help="the approval id from the run's approval.requested event")
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--deny", action="store_true", help="refuse the call (or the plan)")
    choice.add_argument(
        "--always",
        action="store_true",
        help="allow it, and this exact call from now on in the project's policy",
    )
    p.set_defaults(handler=_approve)


def _decision(args: argparse.Namespace) -> str:
    if args.deny:
        return "deny"
    return "always" if args.always else "allow"


def _print(console: Console, approval: dict[str, Any], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(approval))
        return
    what = approval.get("tool") or approval.get("kind")
    console.print(f"{approval['status']}: {what} (run {approval['run_id']})")


async def _approve(args: argparse.Namespace, console: Console) -> int:
    decision = _decision(args)
    server = remote.remote_server(args)
    if server is not None:

        def answer(client: Any) -> int:
            path = f"runs/{quote(args.run, safe='')}/approvals/{quote(args.approval, safe='')}"
            _print(console, dict(client.post(path, {"decision": decision})), args.json)
            return 0

        return remote.run_remote(server, console, answer)
    app = load_app(args)
    ctx = app.build_context()
    try:
        agent = create_agent_manager(app, ctx)
        approval = await agent.decide_approval(
            cli_user(args, ctx), args.run, args.approval, decision
        )
        _print(console, approval, args.json)
        return 0
    finally:
        ctx.db.dispose()
