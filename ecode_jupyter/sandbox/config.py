"""The sandbox of a running server: its policy from EcodeApp's traits, its hidden paths.

What must never be visible to project code is everything of the server's that could let it
act as the server or read another project: the Jupyter runtime folder (server info files
carry the token), config folders, data folder (the database, the secrets key and the release
store live there by default), the configured database file, secrets key file, workspace root
(other projects), release store, Jupyter's root folder and the server user's home. Most of
these are simply never bound in; listing them also covers them when they happen to lie inside
something that is bound (a runtime installed in the home, a config folder inside a venv).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_core.paths import (
    jupyter_config_dir,
    jupyter_config_path,
    jupyter_data_dir,
    jupyter_runtime_dir,
)
from sqlalchemy.engine import make_url

from .launcher import SandboxLauncher
from .policy import SandboxPolicy


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def server_paths(app: Any) -> tuple[Path, ...]:
    """The server's own files and folders (see the module docstring)."""
    serverapp = getattr(app, "serverapp", None)
    found: list[str | Path] = [
        jupyter_runtime_dir(),
        jupyter_config_dir(),
        jupyter_data_dir(),
        *jupyter_config_path(),
        Path.home(),
        app.workspace_root,
        app.releases_dir,
        app.secrets_key_file,
    ]
    for name in ("runtime_dir", "config_dir", "root_dir"):
        value = getattr(serverapp, name, None)
        if value:
            found.append(value)
    url = make_url(app.database_url)
    if url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:"):
        database = _real(url.database)
        # The database with its journal files, and the folder they share.
        found += [database.parent, database]
        found += [database.with_name(database.name + s) for s in ("-wal", "-shm", "-journal")]
    return tuple(dict.fromkeys(_real(p) for p in found))


def create_sandbox_launcher(app: Any) -> SandboxLauncher:
    """The launcher for an EcodeApp's configuration (its ``sandbox*`` traits)."""
    policy = SandboxPolicy(
        mode=app.sandbox,
        network=app.sandbox_network,
        memory_bytes=int(app.sandbox_memory_limit) or None,
        pids=int(app.sandbox_pids_limit) or None,
        cpus=float(app.sandbox_cpu_limit) or None,
        file_size_bytes=int(app.sandbox_file_size_limit) or None,
        hidden=server_paths(app),
        read_only=tuple(_real(p) for p in app.sandbox_read_only_paths),
    )
    launcher = SandboxLauncher(policy)
    report = launcher.host_report()
    if report.complete:
        app.log.info("ecode sandbox: %s", report.summary())
    else:
        # Said at start, and again with every command and app that runs without it.
        app.log.warning("ecode sandbox: %s", report.summary())
    return launcher
