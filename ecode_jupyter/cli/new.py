"""`jupyter ecode new "prompt"`: create a project and build it with the agent, in this process.

No server is needed: the command opens the configured database, runs the agent with the tool
layer in-process, shows the progress feed live and ends with a summary. The exit status is 0
when the run completed, 1 when it failed, 130 when interrupted (the run is then cancelled).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
from typing import Any

from rich.console import Console

from ..agent.config import create_agent_manager
from ..agent.events import FeedEvent
from ..agent.manager import AgentManager, check_mode
from ..agent.modes import validate_mode
from ..context import EcodeContext
from ..identity import EcodeUser
from . import remote
from .config import cli_user, load_app
from .progress import FeedPrinter, summary_table

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 60


def register(subs: Any) -> None:
    p = subs.add_parser("new", help="create a project from a prompt and build it with the agent")
    p.add_argument("prompt", help='what to build, e.g. "a Flask todo API with tests"')
    p.add_argument("--template", help="start from this template (see `projects templates`)")
    p.add_argument("--model", help="model (or provider:model, or `offline`) for the agent")
    p.add_argument("--name", help="project name (default: from the prompt)")
    p.add_argument(
        "--mode",
        choices=["build", "plan", "ask"],
        help="plan: the plan waits for `jupyter ecode approve` before anything is written; "
        "ask: only answer (default: build)",
    )
    p.set_defaults(handler=_new)


def name_from_prompt(prompt: str) -> str:
    """A project name from the prompt's first words."""
    words = prompt.split()
    name = ""
    for word in words:
        if len(name) + len(word) + 1 > MAX_NAME_CHARS:
            break
        name = f"{name} {word}".strip()
    return name or "new project"


def tool_layer_for(ctx: EcodeContext) -> Any:
    """The tool layer in this process (no collaboration rooms outside a server)."""
    from ..tools.context import ManagerProjectAccess
    from ..tools.http import DatabaseAudit
    from ..tools.server import ToolLayer

    # The project's approval policy holds here as on the server.
    return ToolLayer(
        ManagerProjectAccess(ctx.projects, ctx.secrets),
        audit=DatabaseAudit(ctx.db),
        policy=ctx.policies,
    )


async def follow(agent: AgentManager, run_id: str, printer: FeedPrinter, console: Console) -> None:
    """Print the run's events from the first until its final one."""
    last = 0
    with agent.hub.subscribe(run_id) as sub:
        backlog = await agent.events_after(run_id, 0)
        with console.status(printer.status) as status:

            def show(event: FeedEvent) -> bool:
                nonlocal last
                if event.seq <= last:
                    return True
                last = event.seq
                printer.handle(event.to_json())
                status.update(printer.status)
                return not event.terminal

            for event in backlog:
                if not show(event):
                    return
            while True:
                next_event = await sub.get(timeout=5.0)
                if next_event is None:
                    # Nothing in a while: re-read the database (an event published elsewhere).
                    for recorded in await agent.events_after(run_id, last):
                        if not show(recorded):
                            return
                    continue
                if next_event.seq > last + 1:
                    for recorded in await agent.events_after(run_id, last):
                        if recorded.seq < next_event.seq and not show(recorded):
                            return
                if not show(next_event):
                    return


async def _new(args: argparse.Namespace, console: Console) -> int:
    server = remote.remote_server(args)
    if server is not None:
        # The agent runs where the API is (the hub's ecode service), not in this process.
        name = args.name or name_from_prompt(args.prompt)
        return remote.run_remote(
            server, console, lambda c: remote.new_project(c, args, console, name)
        )
    app = load_app(args)
    ctx = app.build_context()
    user: EcodeUser = cli_user(args, ctx)
    ctx.extras["tools"] = layer = tool_layer_for(ctx)
    agent = create_agent_manager(app, ctx, runner_id=f"cli:{socket.gethostname()}:{os.getpid()}")
    ctx.extras["agent"] = agent
    run: dict[str, Any] | None = None
    try:
        await agent.start()
        # A model that cannot run (unknown, unpriced) is refused before a project is made,
        # and so is a mode it cannot serve.
        check_mode(validate_mode(args.mode), await agent.choose(user, args.model))
        project = await ctx.projects.create_project(
            user,
            name=args.name or name_from_prompt(args.prompt),
            template=args.template,
            prompt=args.prompt,
            model=args.model,
        )
        workspace = str(ctx.projects.workspace_path(project["id"]))
        # With --json, stdout carries only the JSON result; the progress goes to stderr.
        live = Console(stderr=True) if args.json else console
        live.print(f"project [bold]{project['name']}[/bold] → {workspace}")
        run = await agent.start_run(user, project["id"], args.prompt, args.model, mode=args.mode)
        printer = FeedPrinter(live)
        try:
            await follow(agent, run["id"], printer, live)
        except asyncio.CancelledError:
            # Ctrl-C: cancel the run (its command is killed) and say so.
            await agent.cancel_run(user, run["id"])
            raise
        run = await agent.get_run(user, run["id"])
        if args.json:
            console.print_json(json.dumps({"project": project, "run": run}))
        else:
            console.print(summary_table(run, project, workspace))
        return 0 if run["status"] == "completed" else 1
    finally:
        await agent.stop()
        await layer.stop()
        ctx.db.dispose()
