"""Load the server's ``c.EcodeApp`` configuration for command-line use."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from jupyter_core.application import JupyterApp

from ..app import EcodeApp
from ..context import EcodeContext
from ..identity import EcodeUser


class _ServerConfigLoader(JupyterApp):
    """Reads jupyter_server_config.{py,json} from the usual Jupyter config path."""

    name = "jupyter-ecode"
    config_file_name = "jupyter_server_config"


def load_app(args: argparse.Namespace) -> EcodeApp:
    loader = _ServerConfigLoader()
    loader.initialize([])
    config = loader.config
    if getattr(args, "database_url", None):
        config.EcodeApp.database_url = args.database_url
    if "workspace_root" not in config.EcodeApp and not os.environ.get("ECODE_WORKSPACE_ROOT"):
        root = config.ServerApp.get("root_dir") or os.getcwd()
        config.EcodeApp.workspace_root = str(Path(root) / "ecode-projects")
    return EcodeApp(config=config)


def open_context(args: argparse.Namespace, *, auto_upgrade: bool | None = None) -> EcodeContext:
    app = load_app(args)
    if auto_upgrade is not None:
        app.db_auto_upgrade = auto_upgrade
    return app.build_context()


def cli_user(args: argparse.Namespace, ctx: EcodeContext) -> EcodeUser:
    name = getattr(args, "user", None) or ctx.owner_name
    is_admin = name in ctx.admin_users or (name == ctx.owner_name and ctx.owner_is_admin)
    return EcodeUser(name, name, is_admin, "cli")
