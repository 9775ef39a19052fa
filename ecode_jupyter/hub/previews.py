"""Previews on a hub: run in the server where the project's files are, served by that server.

On a hub with the ecode service a project's files live in its owner's server, or in a server
of its own (``/user/{owner}/ecode-{slug}``), never in the service. A preview is a process
running those files, so it runs there too, in the same sandbox as the project's commands,
and that server serves it under its own URL (``/user/{owner}/{server}/ecode/apps/@owner/
slug/``) through the hub's proxy: the hub's own login decides who reaches the server (the
owner; on a project server, the members the service shared it with), and the app proxy's
rules (an opaque origin for the app's pages, no Jupyter or hub credential forwarded, keyed
links) are the single-user server's, unchanged.

The service asks for a preview with the ``start_preview`` tool like any other tool call
(hub/remote.py), after checking the caller's role in its database. This server has no
database of ecode's, and must not be given one (it is its owner's to change), so the deploy
manager here keeps its bookkeeping (deployment rows, its audit of starts) in a private
SQLite file of this server's own: what it holds is only this server's previews, which the
owner controls anyway. The project is mirrored into it when the service first asks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..audit import AuditLog
from ..context import EcodeContext
from ..db import Database
from ..db.models import Project, ProjectMember, Role, User
from ..db.schema import ensure_schema
from ..deploy.manager import DeployManager, ProjectRoute
from ..exceptions import NotFound
from ..identity import EcodeUser
from ..projects import validation
from ..projects.manager import ProjectContext, ProjectManager
from ..projects.policy import PolicyManager
from ..secrets import SecretsManager
from ..tools.http import DeployPreviews
from .server import CREATED_MARKER, HubServerAccess, ProjectServerAccess, ServiceCaller


class ServerProjects(ProjectManager):
    """The projects whose folders this server holds, as the deploy manager asks for them.

    Whoever reaches this server's tool layer was let in by it (the ecode service, which has
    checked the caller's role, or the server's owner), so no role is checked again here.
    """

    def __init__(self, db: Database, access: HubServerAccess, owner: str) -> None:
        super().__init__(db, access.workspace_root)
        self.access = access
        self.owner = owner

    def workspace_path(self, project_id: str) -> Path:
        return self.access.workspace(project_id)

    async def project_context(
        self, user: EcodeUser, project_id: Any, need: Role = Role.viewer
    ) -> ProjectContext:
        workspace = self.access.workspace(project_id)  # a malformed id is "no such project"
        if not workspace.is_dir():
            msg = "no such project in this server (its workspace folder is missing)"
            raise NotFound(msg)
        name, slug, template = _facts(workspace, project_id)

        def mirror(session: Session) -> str:
            if session.get(User, self.owner) is None:
                session.add(User(username=self.owner))
            row = session.get(Project, project_id)
            if row is None:
                # The slug names the preview's URL; another project of this server may hold
                # it already (a folder renamed by hand): then the id, which is unique.
                taken = session.scalar(
                    select(Project.id).where(Project.owner == self.owner, Project.slug == slug)
                )
                row = Project(
                    id=project_id,
                    owner=self.owner,
                    name=name,
                    slug=project_id if taken else slug,
                    template=template,
                )
                session.add(row)
                session.add(
                    ProjectMember(project_id=project_id, username=self.owner, role=Role.owner.value)
                )
            return row.slug

        slug = await self.db.run(mirror)
        return ProjectContext(
            id=project_id,
            owner=self.owner,
            slug=slug,
            name=name,
            workspace=workspace.resolve(),
            role=Role.owner,
            template=template,
            prompt=None,
            model=None,
        )


def _facts(workspace: Path, project_id: str) -> tuple[str, str, str | None]:
    """Name, slug and template from the marker the service's create request wrote.

    The marker sits in the workspace, which project code can write: it is read as untrusted
    (a slug that is not a valid one becomes the project's id).
    """
    try:
        data = json.loads((workspace / CREATED_MARKER).read_text())
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    name, slug, template = data.get("name"), data.get("slug"), data.get("template")
    if not (isinstance(slug, str) and validation.SLUG_RE.fullmatch(slug)):
        slug = project_id
    if not (isinstance(name, str) and 0 < len(name) <= 200):
        name = slug
    return name, slug, template if isinstance(template, str) else None


class CallerSecrets(SecretsManager):
    """A project's secrets as the service sent them with its last changing call.

    The service holds the secrets and sends them (for the call's processes only) with every
    tool call that runs code; a preview started by one keeps them for its restarts. Nothing
    is stored here: the secrets key of this class's database is thrown away at exit.
    """

    def __init__(self, db: Database, projects: ProjectManager) -> None:
        super().__init__(db, projects, [Fernet.generate_key()])
        self._env: dict[str, dict[str, str]] = {}

    def remember(self, project_id: str, user: EcodeUser) -> None:
        if isinstance(user, ServiceCaller):
            self._env[project_id] = dict(user.project_env)

    async def project_env(self, project_id: str) -> dict[str, str]:
        return dict(self._env.get(project_id, {}))


class ServerDeployManager(DeployManager):
    """The deploy manager of a hub user's or project's server: previews only.

    Who may open a preview without its key (its plain URL) differs from a server with the
    database: the owner, and on a project's server every member the hub let in (the hub's
    sharing is ecode's membership, kept in step by the service), as viewers.
    """

    project_server: bool = False

    async def role_of(self, project_id: str, username: str) -> Role | None:
        projects = self.projects
        if isinstance(projects, ServerProjects) and username == projects.owner:
            return Role.owner
        return Role.viewer if self.project_server and username else None

    async def route(self, owner: str, slug: str) -> ProjectRoute | None:
        found = await super().route(owner, slug)
        if found is None:
            return None
        # Never public from here: releases (the public apps) run in the service. On a
        # project's server every member sees its preview ("see the same running app"): the
        # hub lets only members in, so the server's login is the membership check.
        visibility = "members" if self.project_server else "private"
        return ProjectRoute(found.project_id, found.owner, found.slug, visibility)


class ServerPreviews(DeployPreviews):
    """The tool layer's preview backend in a hub server: the single-user server's, over this
    server's own deploy context, keeping the secrets each start was sent with."""

    def __init__(self, context: EcodeContext, secrets: CallerSecrets) -> None:
        super().__init__(context)
        self.secrets = secrets

    async def start(
        self, user: EcodeUser, project_id: str, command: str | None, restart: bool
    ) -> dict[str, Any]:
        self.secrets.remember(project_id, user)
        return await super().start(user, project_id, command, restart)


def create_server_previews(
    app: Any, access: HubServerAccess, owner: str, launcher: Any
) -> tuple[EcodeContext, ServerPreviews]:
    """This server's private deploy context and the preview backend of its tool layer."""
    from ..deploy.manager import create_deploy_manager

    state = _state_folder(app)
    db = Database(f"sqlite:///{state / 'previews.sqlite'}")
    ensure_schema(db, auto_upgrade=True)
    projects = ServerProjects(db, access, owner)
    secrets = CallerSecrets(db, projects)
    context = EcodeContext(
        db=db,
        projects=projects,
        secrets=secrets,
        audit=AuditLog(db),
        owner_name=owner,
        admin_users=set(),
        owner_is_admin=False,
        # Nothing here asks it: the service applies projects' policies before it calls.
        policies=PolicyManager(db, projects),
    )
    manager = create_deploy_manager(
        app, context, launcher=launcher, manager_class=ServerDeployManager
    )
    assert isinstance(manager, ServerDeployManager)
    manager.project_server = isinstance(access, ProjectServerAccess)
    context.extras["deploy"] = manager
    return context, ServerPreviews(context, secrets)


def _state_folder(app: Any) -> Path:
    """A folder only this server's account can read, outside every workspace.

    Jupyter's runtime folder (where the server keeps its own connection files) is private
    to the account and out of the sandbox's reach. One folder per hub server name: the
    account's default server and its project servers are apart, and a server finds its
    previous life's rows again at start (to stop the apps a crash left running).
    """
    name = os.environ.get("JUPYTERHUB_SERVER_NAME", "") or "default"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:100]
    folder = Path(app.serverapp.runtime_dir) / f"ecode-server-{safe}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder
