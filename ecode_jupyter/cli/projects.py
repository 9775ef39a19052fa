"""`jupyter ecode projects list|create|delete|restore|templates`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console

from . import remote
from .config import cli_user, open_context
from .tables import (
    add_fixed_column,
    add_id_column,
    add_text_column,
    compact_table,
    find_by_ref,
    short_ids,
    when,
)


def register(subs: Any) -> None:
    p = subs.add_parser("projects", help="list, create, delete and restore projects")
    psubs = p.add_subparsers(dest="projects_command", metavar="ACTION", required=True)
    ls = psubs.add_parser("list", help="my projects")
    ls.add_argument("--deleted", action="store_true", help="list the trash instead")
    ls.set_defaults(handler=_list)
    create = psubs.add_parser("create", help="create a project")
    create.add_argument("name")
    create.add_argument("--template", help="template id (see `projects templates`)")
    create.add_argument("--slug")
    create.add_argument("--prompt", help="stored for the agent")
    create.set_defaults(handler=_create)
    delete = psubs.add_parser("delete", help="delete a project (restorable until purged)")
    delete.add_argument("project", help="project id (or its start, as listed) or slug")
    delete.set_defaults(handler=_delete)
    restore = psubs.add_parser("restore", help="restore a deleted project")
    restore.add_argument("project", help="project id (or its start, as listed) or slug")
    restore.set_defaults(handler=_restore)
    templates = psubs.add_parser("templates", help="the project templates")
    templates.set_defaults(handler=_templates)


def _table(console: Console, projects: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(projects))
        return
    # Fits 80 columns: a short id that commands accept back, and names that wrap.
    table = compact_table()
    add_id_column(table, "id")
    add_text_column(table, "name", ratio=3)
    add_text_column(table, "slug", ratio=3)
    add_text_column(table, "template", ratio=2)
    add_fixed_column(table, "role")
    add_fixed_column(table, "updated")
    short = short_ids(p["id"] for p in projects)
    for p in projects:
        table.add_row(
            short[p["id"]],
            p["name"],
            f"@{p['owner']}/{p['slug']}",
            p["template"] or "",
            p["role"] or "",
            when(p["updated_at"]),
        )
    console.print(table)


async def _find(ctx: Any, user: Any, ref: str, *, deleted: bool = False) -> str:
    """A project's id from its id, the start of it or its slug; anything else as it is (the
    manager then says whether such a project exists for this user)."""
    found = find_by_ref(await ctx.projects.list_projects(user, deleted=deleted), ref)
    return str(found["id"]) if found is not None else ref


async def _list(args: argparse.Namespace, console: Console) -> int:
    server = remote.remote_server(args)
    if server is not None:
        return remote.run_remote(
            server,
            console,
            lambda c: remote.projects_list(c, args, lambda ps: _table(console, ps, args.json)),
        )
    ctx = open_context(args)
    try:
        projects = await ctx.projects.list_projects(cli_user(args, ctx), deleted=args.deleted)
        _table(console, projects, args.json)
        return 0
    finally:
        ctx.db.dispose()


async def _create(args: argparse.Namespace, console: Console) -> int:
    server = remote.remote_server(args)
    if server is not None:
        return remote.run_remote(
            server,
            console,
            lambda c: remote.projects_create(c, args, lambda ps: _table(console, ps, args.json)),
        )
    ctx = open_context(args)
    try:
        project = await ctx.projects.create_project(
            cli_user(args, ctx),
            name=args.name,
            template=args.template,
            slug=args.slug,
            prompt=args.prompt,
        )
        _table(console, [project], args.json)
        console.print(f"workspace: {ctx.projects.workspace_path(project['id'])}")
        return 0
    finally:
        ctx.db.dispose()


async def _delete(args: argparse.Namespace, console: Console) -> int:
    server = remote.remote_server(args)
    if server is not None:
        return remote.run_remote(
            server, console, lambda c: remote.projects_delete(c, args, console)
        )
    ctx = open_context(args)
    try:
        user = cli_user(args, ctx)
        project = await ctx.projects.delete_project(user, await _find(ctx, user, args.project))
        console.print(
            f"deleted {project['name']} (restore with `jupyter ecode projects restore "
            f"{project['id']}`)"
        )
        return 0
    finally:
        ctx.db.dispose()


async def _restore(args: argparse.Namespace, console: Console) -> int:
    server = remote.remote_server(args)
    if server is not None:
        return remote.run_remote(
            server, console, lambda c: remote.projects_restore(c, args, console)
        )
    ctx = open_context(args)
    try:
        user = cli_user(args, ctx)
        project_id = await _find(ctx, user, args.project, deleted=True)
        project = await ctx.projects.restore_project(user, project_id)
        console.print(f"restored {project['name']}")
        return 0
    finally:
        ctx.db.dispose()


async def _templates(args: argparse.Namespace, console: Console) -> int:
    from ..projects.templating import list_templates

    table = compact_table()
    add_fixed_column(table, "id")
    add_text_column(table, "title", ratio=1)
    add_text_column(table, "description", ratio=3)
    for t in list_templates():
        table.add_row(t.id, t.title, t.description)
    console.print(table)
    return 0
