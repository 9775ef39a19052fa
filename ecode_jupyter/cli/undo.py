"""`jupyter ecode undo RUN` and `jupyter ecode restore PROJECT CHECKPOINT` (issue 19).

Undo puts back the files a run changed; restore puts the project back as it was at one of its
checkpoints (`jupyter ecode checkpoints PROJECT` lists them). Edits people made since are kept
(merged); where they overlap, the file is left as it is and the conflict is printed. Through a
server's API (``--server``, or by itself in a hub user's environment) the revert goes through
that server's writer, so documents open in JupyterLab change live; without one it works on
the database and the files directly (open documents then reload from disk).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console

from ..checkpoints import CheckpointManager
from ..context import EcodeContext
from . import remote
from .config import cli_user, load_app
from .tables import find_by_ref


def register(subs: Any) -> None:
    p = subs.add_parser("undo", help="put back the files a run changed")
    p.add_argument("run", help="the run's id")
    p.set_defaults(handler=_undo)
    p = subs.add_parser("restore", help="put a project back as it was at a checkpoint")
    p.add_argument("project", help="the project's id, slug or @owner/slug")
    p.add_argument("checkpoint", type=int, help="the checkpoint's number (see checkpoints)")
    p.set_defaults(handler=_restore)
    p = subs.add_parser("checkpoints", help="list a project's checkpoints, newest first")
    p.add_argument("project", help="the project's id, slug or @owner/slug")
    p.set_defaults(handler=_list)


def _print_result(console: Console, result: dict[str, Any], as_json: bool) -> int:
    if as_json:
        console.print_json(json.dumps(result))
        return 1 if result["conflicts"] else 0
    for path in result["restored"]:
        console.print(f"put back  {path}")
    for path in result["merged"]:
        console.print(f"merged    {path}  (your edits kept)")
    for conflict in result["conflicts"]:
        console.print(f"[yellow]conflict[/yellow]  {conflict['path']}: {conflict['reason']}")
        if conflict.get("merge"):
            console.print(conflict["merge"], markup=False, highlight=False)
    if not (result["restored"] or result["merged"] or result["conflicts"]):
        console.print("nothing to put back: the files are already as they were")
    # Non-zero when something was left for a person to resolve, so scripts notice.
    return 1 if result["conflicts"] else 0


def _print_list(console: Console, items: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        console.print_json(json.dumps(items))
        return 0
    for item in items:
        where = f"run {str(item['run_id'])[:8]} step {item['step']}" if item["run_id"] else ""
        changed = ", ".join(item["changed"][:5]) + (" …" if len(item["changed"]) > 5 else "")
        console.print(f"{item['id']:>5}  {item['kind']:<8} {where:<22} {changed}")
    return 0


def _manager(app: Any, ctx: EcodeContext) -> CheckpointManager:
    return CheckpointManager(ctx, Path(app.checkpoints_dir), keep=app.checkpoint_retention)


async def _local(args: argparse.Namespace, work: Any) -> Any:
    app = load_app(args)
    ctx = app.build_context()
    try:
        return await work(_manager(app, ctx), cli_user(args, ctx), ctx)
    finally:
        ctx.db.dispose()


async def _project_id(ctx: EcodeContext, user: Any, ref: str) -> str:
    projects = await ctx.projects.list_projects(user)
    found = find_by_ref(projects, ref)
    return str(found["id"]) if found is not None else ref


async def _undo(args: argparse.Namespace, console: Console) -> int:
    server = remote.remote_server(args)
    if server is not None:
        path = f"runs/{quote(args.run, safe='')}/undo"
        return remote.run_remote(
            server, console, lambda c: _print_result(console, dict(c.post(path, {})), args.json)
        )
    result = await _local(args, lambda m, user, _ctx: m.undo_run(user, args.run))
    return _print_result(console, result, args.json)


async def _restore(args: argparse.Namespace, console: Console) -> int:
    server = remote.remote_server(args)
    if server is not None:

        def restore(client: Any) -> int:
            pid = remote._project_id(client, args.project)
            path = f"projects/{quote(pid, safe='')}/checkpoints/{args.checkpoint}/restore"
            return _print_result(console, dict(client.post(path, {})), args.json)

        return remote.run_remote(server, console, restore)

    async def work(m: CheckpointManager, user: Any, ctx: EcodeContext) -> Any:
        return await m.restore(user, await _project_id(ctx, user, args.project), args.checkpoint)

    return _print_result(console, await _local(args, work), args.json)


async def _list(args: argparse.Namespace, console: Console) -> int:
    server = remote.remote_server(args)
    if server is not None:

        def listing(client: Any) -> int:
            pid = remote._project_id(client, args.project)
            reply = client.get(f"projects/{quote(pid, safe='')}/checkpoints")
            return _print_list(console, list(reply["checkpoints"]), args.json)

        return remote.run_remote(server, console, listing)

    async def work(m: CheckpointManager, user: Any, ctx: EcodeContext) -> Any:
        return await m.list_checkpoints(user, await _project_id(ctx, user, args.project))

    return _print_list(console, await _local(args, work), args.json)
