"""``jupyter ecode settings``: every ``c.EcodeApp`` setting, its help and its default.

Extension settings are not in ``jupyter server --help-all`` (it lists the server's own
classes), so this is where a user or an admin finds them.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from ..app import EcodeApp


def register(subs: Any) -> None:
    p = subs.add_parser(
        "settings", help="the c.EcodeApp settings (jupyter_server_config.py), with defaults"
    )
    p.set_defaults(handler=_settings)


async def _settings(args: argparse.Namespace, console: Console) -> int:
    # Plain print: the help text is already laid out, and rich would re-wrap it.
    print(EcodeApp.class_get_help())
    return 0
