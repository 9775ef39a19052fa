"""`jupyter ecode eval`: the app-building eval (ecode_jupyter/evals/harness.py).

Each spec's prompt becomes a project on a server this command starts for itself (a temporary
folder and database, never the configured ones), and the app is checked as a user would:
HTTP requests through the preview proxy, browser workflows, files. Prints a table and writes
a JSON report; the offline provider (no key) passes the specs its templates fit and fails the
rest, saying why.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from rich.console import Console


def register(subs: Any) -> None:
    from ..evals.harness import add_options

    p = subs.add_parser(
        "eval", help="build the eval's app specs end to end and report the pass rate"
    )
    add_options(p)
    p.set_defaults(handler=_eval)


async def _eval(args: argparse.Namespace, console: Console) -> int:
    from ..evals.harness import run_eval

    # The harness waits on a server process with blocking HTTP calls: off the event loop.
    return await asyncio.to_thread(run_eval, args)
