"""The managers of one running server, shared by handlers through tornado settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .audit import AuditLog
from .db import Database
from .projects import ProjectManager
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
    # Concerns that arrive with later issues register here (agent, billing, tools, deploy).
    extras: dict[str, Any] = field(default_factory=dict)
