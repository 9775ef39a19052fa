"""The managers of one running server, shared by handlers through tornado settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .audit import AuditLog
from .db import Database
from .projects import ProjectManager
from .projects.policy import PolicyManager
from .secrets import SecretsManager


@dataclass
class EcodeContext:
    db: Database
    projects: ProjectManager
    secrets: SecretsManager
    audit: AuditLog
    owner_name: str
    admin_users: set[str]
    owner_is_admin: bool
    #: projects' approval policies (allow / ask / deny per tool and command)
    policies: PolicyManager
    # Concerns that arrive with later issues register here (agent, billing, tools, deploy).
    extras: dict[str, Any] = field(default_factory=dict)


def server_identity(owner_name: str, workspace_root: str) -> str:
    """Who this server is, the same across its restarts: host, owner and workspace root.

    Not its port: hub spawners pick a new port at every start, and a restarted server must
    find the runs, apps and holds of its previous life (a server on another workspace root
    of the same host is another server). Two servers on one workspace root are one server
    to this identity: they would share projects anyway.
    """
    import socket

    return f"{socket.gethostname()}:{owner_name}:{workspace_root}"


def build_context(
    *,
    database_url: str,
    workspace_root: str,
    secrets_key: str,
    secrets_key_file: str,
    owner_name: str,
    admin_users: set[str],
    owner_is_admin: bool,
    trash_retention_days: float,
    max_projects_per_user: int,
    auto_upgrade: bool | None,
) -> EcodeContext:
    """Open the database (checking its schema) and make the managers, for server and CLI."""
    from pathlib import Path

    from .db.schema import ensure_schema
    from .secrets import load_or_create_key
    from .secrets.manager import key_from_config

    db = Database(database_url)
    try:
        ensure_schema(db, auto_upgrade=auto_upgrade)
    except Exception:
        db.dispose()
        raise
    root = Path(workspace_root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    keys = (
        key_from_config(secrets_key)
        if secrets_key
        else [load_or_create_key(Path(secrets_key_file))]
    )
    projects = ProjectManager(
        db,
        root,
        trash_retention_days=trash_retention_days,
        max_projects_per_user=max_projects_per_user,
    )
    return EcodeContext(
        db=db,
        projects=projects,
        secrets=SecretsManager(db, projects, keys),
        audit=AuditLog(db),
        owner_name=owner_name,
        admin_users=admin_users,
        owner_is_admin=owner_is_admin,
        policies=PolicyManager(db, projects),
    )
