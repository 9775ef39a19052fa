"""`jupyter ecode …`: the suite from a shell.

Each subcommand lives in its own module with ``register(subparsers)``; the command reads the
same ``c.EcodeApp.*`` configuration as the server (jupyter_server_config files) and acts on the
database directly, as the configured owner or ``--user``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from rich.console import Console

from ..exceptions import EcodeError

log = logging.getLogger(__name__)

SUBCOMMAND_MODULES = ["projects", "db", "settings"]
# Optional subcommands of later concerns; absent modules are simply not offered.
OPTIONAL_MODULES = ["new", "runs", "credits", "approve", "undo", "eval"]

Handler = Callable[[argparse.Namespace, Console], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="jupyter ecode", description="E-Code: one prompt to a running project."
    )
    parser.add_argument("--user", help="act as this user (default: the configured owner)")
    parser.add_argument(
        "--database-url", help="override c.EcodeApp.database_url / ECODE_DATABASE_URL"
    )
    parser.add_argument(
        "--server",
        help="use this Jupyter server's ecode API instead of the database (on a hub user's "
        "server this is the default: the API goes to the ecode service)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--debug", action="store_true", help="log at debug level")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES + OPTIONAL_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if name in OPTIONAL_MODULES and exc.name == f"{__name__}.{name}":
                continue
            raise
        module.register(subs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # --json output is for programs: no colour (a kernel's environment forces it on) and no
    # wrapping at the terminal's width, either of which would break the JSON.
    console = Console(color_system=None, soft_wrap=True) if args.json else Console()
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return asyncio.run(handler(args, console))
    except EcodeError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
