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
from .tables import (
    add_fixed_column,
    add_id_column,
    add_text_column,
    compact_table,
    find_by_ref,
    model_label,
    short_ids,
    when,
)

PROMPT_CHARS = 60


def register(subs: Any) -> None:
    p = subs.add_parser("runs", help="agent runs of a project (default: of all my projects)")
    p.add_argument("project", nargs="?", help="project id (or its start, as listed) or slug")
    p.add_argument("--limit", type=int, default=20, help="most runs per project (default: 20)")
    p.set_defaults(handler=_runs)


def _table(rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> Table:
    # Fits 80 columns: short run ids (accepted back), whole statuses, wrapped text; the
    # project column only when the runs are of more than one project.
    several = len({project["id"] for project, _ in rows}) > 1
    table = compact_table()
    add_id_column(table, "run")
    if several:
        add_text_column(table, "project", ratio=2)
    # The status word is whole on the first line ("interrupted" is the longest); the reason
    # below it may wrap.
    add_text_column(table, "status", min_width=len("interrupted"), ratio=2)
    add_text_column(table, "model", ratio=2)
    add_fixed_column(table, "turns", justify="right")
    add_fixed_column(table, "credits", justify="right")
    add_fixed_column(table, "created")
    add_text_column(table, "prompt", ratio=3)
    short = short_ids(run["id"] for _, run in rows)
    for project, run in rows:
        status = run["status"] + (f"\n({run['reason']})" if run.get("reason") else "")
        prompt = " ".join(run["prompt"].split())
        if len(prompt) > PROMPT_CHARS:
            prompt = prompt[: PROMPT_CHARS - 1] + "…"
        table.add_row(
            short[run["id"]],
            *([f"@{project['owner']}/{project['slug']}"] if several else []),
            status,
            model_label(run.get("provider"), run["model"]),
            str(run["steps"]),
            credits(int(run["cost_micros"])),
            when(run["created_at"]),
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
            found = find_by_ref(projects, args.project)
            if found is None:
                console.print(f"[red]error:[/red] no project {args.project!r}")
                return 1
            projects = [found]
        rows = []
        for project in projects:
            for run in await agent.list_runs(user, project["id"], limit=args.limit):
                rows.append((project, run))
        rows.sort(key=lambda pr: pr[1]["created_at"], reverse=True)
        _print(console, rows, args.json)
        return 0
    finally:
        ctx.db.dispose()
