"""Who is calling a tool, on which project, and where its progress goes.

A tool call is stateless: it names its project, and the caller's rights on that project are
checked on every call (viewers may read, editors and owners may write). The same tool code
runs for an MCP client over HTTP and for the agent in-process; what differs is only how the
caller is known and where progress goes — a :class:`ToolReporter`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ecode_jupyter.db.models import Role
from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.projects.manager import ProjectManager
from ecode_jupyter.secrets.manager import SecretsManager
from ecode_jupyter.workspace.writer import FileChange

log = logging.getLogger(__name__)

# Where a project's own database lives, relative to its workspace (see query_database).
PROJECT_DATABASE = ".ecode/database.sqlite3"


class ToolReporter(Protocol):
    """Receives what a tool does while it runs. Called by the tools only.

    The agent implements it to emit ``command.output``/``file.changed`` events; over MCP it
    becomes progress notifications. Implementations must not raise.
    """

    async def progress(self, message: str) -> None: ...

    async def output(self, chunk: str) -> None: ...

    async def file_changed(self, change: FileChange) -> None: ...


class NullReporter:
    async def progress(self, message: str) -> None:
        return None

    async def output(self, chunk: str) -> None:
        return None

    async def file_changed(self, change: FileChange) -> None:
        return None


class Approver(Protocol):
    """Asks a person about a tool call the project's policy marks ``ask``, and waits for the
    answer. Only agent runs have one (agent/approvals.py): an outside MCP client has nobody
    to ask, so such a call is refused.

    Returns ``allow``, ``deny`` or ``always`` (allow, and the rule is already added).
    """

    async def approve(self, tool: str, arguments: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class Caller:
    """The authenticated user behind a call, where its progress goes, and who approves."""

    user: EcodeUser
    reporter: ToolReporter = field(default_factory=NullReporter)
    approver: Approver | None = None


@dataclass(frozen=True)
class ToolProject:
    """A project as a tool sees it after authorization. ``env`` holds secrets: never log it."""

    id: str
    workspace: Path
    role: Role
    env: dict[str, str] = field(repr=False)

    @property
    def database_path(self) -> Path:
        return self.workspace / PROJECT_DATABASE

    @property
    def venv(self) -> Path:
        return self.workspace / ".venv"


class ProjectAccess(Protocol):
    """Authorizes a caller on a project. Called by the tool layer on every tool call.

    Raises ``NotFound`` for a project the user may not see and ``Forbidden`` when ``write``
    is asked by a viewer.
    """

    async def open(self, user: EcodeUser, project_id: str, *, write: bool) -> ToolProject: ...


def project_environment(workspace: Path, secrets: dict[str, str]) -> dict[str, str]:
    """Variables a project's commands and kernel get on top of the clean base environment.

    ``DATABASE_URL`` points at the project's own SQLite file unless a secret overrides it;
    the project's virtual environment and ``node_modules/.bin`` come first on ``PATH`` when
    present.
    """
    env = {"DATABASE_URL": f"sqlite:///{workspace / PROJECT_DATABASE}"}
    env.update(secrets)
    bins = []
    venv = workspace / ".venv"
    if (venv / "bin" / "python").exists():
        env["VIRTUAL_ENV"] = str(venv)
        bins.append(str(venv / "bin"))
    if (workspace / "node_modules" / ".bin").is_dir():
        bins.append(str(workspace / "node_modules" / ".bin"))
    if bins:
        env["PATH"] = os.pathsep.join([*bins, os.environ.get("PATH", os.defpath)])
    return env


class ManagerProjectAccess:
    """:class:`ProjectAccess` over the suite's ProjectManager and SecretsManager."""

    def __init__(self, projects: ProjectManager, secrets: SecretsManager | None = None) -> None:
        self._projects = projects
        self._secrets = secrets

    async def open(self, user: EcodeUser, project_id: str, *, write: bool) -> ToolProject:
        need = Role.editor if write else Role.viewer
        ctx = await self._projects.project_context(user, project_id, need)
        workspace = ctx.workspace.resolve()
        # Secrets only reach tools that run code, and those need the editor role.
        secrets = await self._secrets.project_env(ctx.id) if (write and self._secrets) else {}
        return ToolProject(
            id=ctx.id,
            workspace=workspace,
            role=ctx.role,
            env=project_environment(workspace, secrets),
        )
