"""EcodeApp: the Jupyter Server extension. Traits, settings, handlers, stop — nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Set, Unicode, default

from .context import EcodeContext, build_context
from .db.session import redact_url
from .exceptions import SchemaOutOfDate
from .handlers import audit, members, projects, secrets
from .handlers.base import fallback_handlers

log = logging.getLogger(__name__)

HANDLER_MODULES = [projects, members, secrets, audit]


class EcodeApp(ExtensionApp):
    name = "ecode_jupyter"
    description = "E-Code: one prompt to a running project, inside Jupyter"
    load_other_extensions = True

    database_url = Unicode(
        help="""SQLAlchemy URL of the ecode database. Default: a SQLite file
        `ecode/ecode.sqlite` in the Jupyter data dir. Use `postgresql+psycopg://user@host/db`
        for a deployment shared by many users. Env fallback: ECODE_DATABASE_URL.""",
    ).tag(config=True)

    @default("database_url")
    def _default_database_url(self) -> str:
        env = os.environ.get("ECODE_DATABASE_URL")
        if env:
            return env
        path = Path(jupyter_data_dir()) / "ecode" / "ecode.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"

    db_auto_upgrade = Bool(
        None,
        allow_none=True,
        help="""Upgrade the database schema at start-up. Default (None): yes for SQLite (the
        file is backed up first), no for PostgreSQL, where `jupyter ecode db upgrade` does it
        and a server on a stale schema refuses to start.""",
    ).tag(config=True)

    workspace_root = Unicode(
        help="""Folder where project workspaces live, one sub-folder per project id.
        Default: `ecode-projects` under the server's root_dir, so projects show in Lab's file
        browser. Env fallback: ECODE_WORKSPACE_ROOT.""",
    ).tag(config=True)

    @default("workspace_root")
    def _default_workspace_root(self) -> str:
        env = os.environ.get("ECODE_WORKSPACE_ROOT")
        if env:
            return env
        root = getattr(self.serverapp, "root_dir", None) or os.getcwd()
        return str(Path(root) / "ecode-projects")

    trash_retention_days = Float(
        30.0,
        help="Days a deleted project stays restorable before it is purged. Default: 30 days.",
    ).tag(config=True)

    purge_interval_s = Float(
        3600.0,
        help="Seconds between sweeps that purge expired deleted projects. Default: 3600 s.",
    ).tag(config=True)

    secrets_key = Unicode(
        help="""Fernet key(s) encrypting project secrets, comma-separated (the first
        encrypts, all decrypt, for rotation). Default: read from `secrets_key_file`. Env
        fallback: ECODE_SECRETS_KEY.""",
    ).tag(config=True)

    @default("secrets_key")
    def _default_secrets_key(self) -> str:
        return os.environ.get("ECODE_SECRETS_KEY", "")

    secrets_key_file = Unicode(
        help="""File holding the Fernet key for secrets, created with mode 0600 on first use.
        Default: `ecode/secrets.key` in the Jupyter data dir.""",
    ).tag(config=True)

    @default("secrets_key_file")
    def _default_secrets_key_file(self) -> str:
        return str(Path(jupyter_data_dir()) / "ecode" / "secrets.key")

    owner_name = Unicode(
        help="""In a stock single-user Jupyter server every login is the server's owner; this
        is the username their projects are stored under. Default: the OS user name.
        (Under JupyterHub or a custom IdentityProvider the identity's username is used.)""",
    ).tag(config=True)

    @default("owner_name")
    def _default_owner_name(self) -> str:
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "owner"

    owner_is_admin = Bool(
        True,
        help="""In a stock single-user server, the owner is an ecode admin (may read the audit
        trail and grant credits). Default: True.""",
    ).tag(config=True)

    admin_users = Set(
        Unicode(),
        help="""Usernames that are ecode admins in any deployment. JupyterHub admins are
        admins too. Default: empty.""",
    ).tag(config=True)

    max_projects_per_user = Float(
        500,
        help="Most projects one user may own (deleted ones count until purged). Default: 500.",
    ).tag(config=True)

    def build_context(self) -> EcodeContext:
        """The managers for this configuration (the CLI uses this too)."""
        return build_context(
            database_url=self.database_url,
            workspace_root=self.workspace_root,
            secrets_key=self.secrets_key,
            secrets_key_file=self.secrets_key_file,
            owner_name=self.owner_name,
            admin_users=set(self.admin_users),
            owner_is_admin=self.owner_is_admin,
            trash_retention_days=self.trash_retention_days,
            max_projects_per_user=int(self.max_projects_per_user),
            auto_upgrade=self.db_auto_upgrade,
        )

    def initialize_settings(self) -> None:
        try:
            context = self.build_context()
        except SchemaOutOfDate as exc:
            # Refuse to start: serving on a schema we do not understand could lose data.
            self.log.critical("%s", exc.message)
            raise SystemExit(1) from None
        self.log.info("ecode database: %s", redact_url(context.db.url))
        self.ecode = context
        self._tasks: list[asyncio.Task[Any]] = []
        self.settings.update({"ecode": context})

    def initialize_handlers(self) -> None:
        for module in HANDLER_MODULES:
            self.handlers.extend(module.default_handlers)
        self.handlers.extend(fallback_handlers)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        self._tasks.append(asyncio.create_task(self._purge_loop()))

    async def _purge_loop(self) -> None:
        while True:
            try:
                await self.ecode.projects.purge_expired()
            except Exception:
                log.exception("purging expired projects failed")
            await asyncio.sleep(self.purge_interval_s)

    async def stop_extension(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.ecode.db.dispose)
