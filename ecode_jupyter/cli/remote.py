"""`jupyter ecode` over the ecode REST API, for where there is no database to open.

On a hub with the ecode service a user's server holds no database and no keys (its
terminals and kernels have ``ECODE_SERVICE_URL`` instead): there the command talks to the
ecode API of the user's own server, which forwards to the service as its owner, with the
token the environment holds (``JUPYTERHUB_API_TOKEN``, scoped to that). ``--server URL``
asks for the same anywhere (a token from ``ECODE_TOKEN`` / ``JUPYTER_TOKEN``).

What a user may do is then what the service lets them: their projects, their runs, their
credits, admins' grants. The database commands (``db``, ``settings``) stay local: they are an
admin's, run where the database is.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from ..client.discovery import ServerInfo, env_token, find_server, normalize_url
from ..client.feed import follow_events
from ..client.rest import ClientError, EcodeClient
from ..exceptions import EcodeError
from .tables import find_by_ref

# Set in users' servers (and so their terminals and kernels) on a hub with the service.
SERVICE_ENV = "ECODE_SERVICE_URL"
TERMINAL_STATUSES = ("completed", "failed", "cancelled", "interrupted")


class RemoteUnavailable(EcodeError):
    status = 400
    code = "no_server"


def remote_server(args: argparse.Namespace) -> ServerInfo | None:
    """The server to use instead of a database, or None to open the database as before."""
    if getattr(args, "database_url", None):
        return None
    explicit = getattr(args, "server", None)
    if explicit:
        return ServerInfo(normalize_url(explicit), env_token(os.environ), "--server")
    if not os.environ.get(SERVICE_ENV):
        return None
    found = find_server(os.environ)
    if found is None:
        msg = (
            "this is a hub user's environment (ECODE_SERVICE_URL is set) but no Jupyter server "
            "of yours was found to reach the ecode service through; pass --server URL"
        )
        raise RemoteUnavailable(msg)
    return found


def run_remote(server: ServerInfo, console: Console, action: Callable[[EcodeClient], int]) -> int:
    client = EcodeClient(server)
    try:
        return action(client)
    except ClientError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    finally:
        client.close()


def _project_id(client: EcodeClient, ref: str, *, deleted: bool = False) -> str:
    found = find_by_ref(client.list_projects(deleted=deleted), ref)
    return str(found["id"]) if found is not None else ref


# -- projects -----------------------------------------------------------------------------


def projects_list(client: EcodeClient, args: argparse.Namespace, show: Any) -> int:
    show(client.list_projects(deleted=args.deleted))
    return 0


def projects_create(client: EcodeClient, args: argparse.Namespace, show: Any) -> int:
    body = {"name": args.name}
    for key in ("template", "slug", "prompt"):
        value = getattr(args, key, None)
        if value:
            body[key] = value
    show([client.post("projects", body)])
    return 0


def projects_delete(client: EcodeClient, args: argparse.Namespace, console: Console) -> int:
    project_id = _project_id(client, args.project)
    project = client.request("DELETE", f"projects/{quote(project_id, safe='')}")
    console.print(
        f"deleted {project['name']} (restore with `jupyter ecode projects restore {project['id']}`)"
    )
    return 0


def projects_restore(client: EcodeClient, args: argparse.Namespace, console: Console) -> int:
    project_id = _project_id(client, args.project, deleted=True)
    project = client.post(f"projects/{quote(project_id, safe='')}/restore")
    console.print(f"restored {project['name']}")
    return 0


# -- runs ---------------------------------------------------------------------------------


def runs(client: EcodeClient, args: argparse.Namespace) -> list[tuple[dict[str, Any], Any]]:
    projects = client.list_projects()
    if args.project:
        found = find_by_ref(projects, args.project)
        if found is None:
            msg = f"no project {args.project!r}"
            raise RemoteUnavailable(msg)
        projects = [found]
    rows: list[tuple[dict[str, Any], Any]] = []
    for project in projects:
        listed = client.get(f"projects/{quote(project['id'], safe='')}/runs", limit=args.limit)
        rows.extend((project, run) for run in listed["runs"])
    rows.sort(key=lambda pr: pr[1]["created_at"], reverse=True)
    return rows


# -- credits ------------------------------------------------------------------------------


def credits_data(client: EcodeClient, args: argparse.Namespace) -> dict[str, Any]:
    if args.grant:
        target, amount = args.grant
        body: dict[str, Any] = {"user": target, "credits": amount, "note": args.note}
        if args.key:
            body["key"] = args.key
        return {"grant": client.post("billing/grants", body)}
    return {
        "account": client.get("billing/account"),
        "usage": client.get("billing/usage", group=args.group),
    }


# -- new ----------------------------------------------------------------------------------


def new_project(
    client: EcodeClient,
    args: argparse.Namespace,
    console: Console,
    name: str,
) -> int:
    """Create the project with the prompt, start the agent in the service, follow its feed."""
    body: dict[str, Any] = {"name": name}
    if args.template:
        body["template"] = args.template
    project = client.post("projects", body)
    run_body: dict[str, Any] = {"prompt": args.prompt}
    if args.model:
        run_body["model"] = args.model
    if getattr(args, "mode", None):
        run_body["mode"] = args.mode
    run = client.post(f"projects/{quote(project['id'], safe='')}/runs", run_body)
    where = f"@{project['owner']}/{project['slug']}"
    console.print(f"project {where} ({project['id']}), run {run['id']}")

    def show(event: dict[str, Any]) -> None:
        if args.json:
            console.print_json(json.dumps(event))
            return
        text = _event_text(event)
        if text:
            # Event text is the model's and the project's: never rich markup.
            console.print(text, markup=False, highlight=False)

    follow_events(client.server, run["id"], show)
    final = client.get_run(run["id"])
    table = Table("", "")
    reason = f" ({final['reason']})" if final.get("reason") else ""
    table.add_row("status", final["status"] + reason)
    table.add_row("model", str(final.get("model") or ""))
    table.add_row("turns", str(final.get("steps", "")))
    console.print(table)
    return 0 if final["status"] == "completed" else 1


def _event_text(event: dict[str, Any]) -> str:
    """One line for the events a person follows; message pieces and output streams are
    left to the summary (they arrive in fragments)."""
    kind = str(event.get("type", ""))
    data = event.get("data") or {}
    if kind == "tool.call":
        return f"  → {data.get('name') or data.get('tool') or ''}"
    if kind == "file.changed":
        return f"  ✎ {data.get('path', '')}"
    if kind == "plan":
        steps = data.get("steps") or []
        return "plan:\n" + "\n".join(f"  {i}. {_step(s)}" for i, s in enumerate(steps, 1))
    if kind == "verify.result":
        return f"[verify] {data.get('command', '')} → exit {data.get('exit_code')}"
    if kind.startswith("run."):
        detail = data.get("reason") or data.get("message") or ""
        return f"[{kind}] {detail if isinstance(detail, str) else ''}".rstrip()
    return ""


def _step(step: Any) -> str:
    return str(step.get("title") or step) if isinstance(step, dict) else str(step)
