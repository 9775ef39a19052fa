"""`jupyter ecode runs [PROJECT]`: the agent runs of a project, or of all my projects."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from ..agent.config import create_agent_manager
from . import remote
from .config import cli_user, load_app
from .progress import credits


def register(subs: Any) -> None:
    p = subs.add_parser("runs", help="agent runs of a project (default: of all my projects)")
    p.add_argument("project", nargs="?", help="project id or slug")
    p.add_argument("--limit", type=int, default=20, help="most runs per project (default: 20)")
    p.set_defaults(handler=_runs)


def _table(rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> Table:
    table = Table("run", "project", "status", "model", "turns", "credits", "created", "prompt")
    for project, run in rows:
        status = run["status"] + (f" ({run['reason']})" if run.get("reason") else "")
        prompt = run["prompt"] if len(run["prompt"]) <= 40 else run["prompt"][:39] + "…"
        table.add_row(
            run["id"],
            f"@{project['owner']}/{project['slug']}",
            status,
            run["model"],
            str(run["steps"]),
            credits(int(run["cost_micros"])),
            run["created_at"][:19],
            prompt,
        )
    return table


def _print(
    console: Console, rows: list[tuple[dict[str, Any], dict[str, Any]]], as_json: bool
) -> None:
    if as_json:
        console.print_json(json.dumps([run for _, run in rows]))
    else:
        console.print(_table(rows))


async def _runs(args: argparse.Namespace, console: Console) -> int:
    server = remote.remote_server(args)
    if server is not None:

        def show(client: Any) -> int:
            rows = remote.runs(client, args)
            _print(console, rows, args.json)
            return 0

        return remote.run_remote(server, console, show)
    app = load_app(args)
    ctx = app.build_context()
    try:
        user = cli_user(args, ctx)
        agent = create_agent_manager(app, ctx)
        projects = await ctx.projects.list_projects(user)
        if args.project:
            projects = [p for p in projects if args.project in (p["id"], p["slug"])]
            if not projects:
                console.print(f"[red]error:[/red] no project {args.project!r}")
                return 1
        rows = []
        for project in projects:
            for run in await agent.list_runs(user, project["id"], limit=args.limit):
                rows.append((project, run))
        rows.sort(key=lambda pr: pr[1]["created_at"], reverse=True)
        _print(console, rows, args.json)
        return 0
    finally:
        ctx.db.dispose()
