"""``/api/ecode/projects/{id}/server`` (the ecode service): a project's own server.

``POST`` opens it (starts it through the hub when it is stopped; any member; an editor may ask
for one of the admin's profiles, ``{"profile": "gpu"}``), ``GET`` tells
its state, ``DELETE`` stops it (editors and owners). The answer's ``url`` is the path of the
project's Lab on the hub (``/user/{owner}/ecode-{slug}/lab``), which the hub's proxy opens to
the project's members only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..db.models import Role
from ..exceptions import InvalidInput
from ..handlers.base import EcodeHandler
from .projects import ProjectServers, server_name
from .remote import ProjectPlacement


class ProjectServerHandler(EcodeHandler):
    @property
    def placement(self) -> ProjectPlacement:
        placement: ProjectPlacement = self.settings["ecode_placement"]
        return placement

    @property
    def servers(self) -> ProjectServers:
        servers = self.placement.servers
        assert servers is not None  # registered only with project servers on
        return servers

    def _model(self, owner: str, slug: str, state: dict[str, Any] | None) -> dict[str, Any]:
        name = server_name(slug)
        base = urlsplit(self.placement.directory.link.users_url).path or "/"
        return {
            "name": name,
            "owner": owner,
            "url": f"{base}user/{owner}/{name}/lab",
            "ready": bool(state and state.get("ready")),
            "pending": (state or {}).get("pending"),
            # What it was started with, and what may be asked for when it is stopped.
            "profile": ((state or {}).get("user_options") or {}).get("profile"),
            "profiles": self.servers.profiles,
        }

    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        project = await self.ecode.projects.project_context(self.ecode_user, project_id)
        state = await self.servers.state(project.owner, server_name(project.slug))
        self.finish_json(self._model(project.owner, project.slug, state))

    @web.authenticated
    @authorized
    async def post(self, project_id: str) -> None:
        body = self.json_body()
        unknown = set(body) - {"profile"}
        if unknown:
            msg = f"unknown fields: {', '.join(sorted(unknown))}"
            raise InvalidInput(msg)
        asked = body.get("profile")
        # Opening is for every member; choosing the resources it starts with, for editors.
        need = Role.editor if asked is not None else Role.viewer
        project = await self.ecode.projects.project_context(self.ecode_user, project_id, need)
        profile = self.servers.profile_for(asked)
        # Someone is about to work there: the project's secrets as they are now, for the
        # kernels they start (a secret changed since the server started is caught up), sent
        # once whether or not the server had to be started.
        await self.placement.server_for(
            project.id, project.owner, project.slug, profile=profile, send_env=True
        )
        state = await self.servers.state(project.owner, server_name(project.slug))
        self.finish_json(self._model(project.owner, project.slug, state))

    @web.authenticated
    @authorized
    async def delete(self, project_id: str) -> None:
        project = await self.ecode.projects.project_context(
            self.ecode_user, project_id, Role.editor
        )
        await self.servers.stop(project.owner, server_name(project.slug))
        self.placement.forget(project.owner, project.slug)
        self.set_status(204)
        self.finish()


default_handlers = [(r"/api/ecode/projects/(?P<project_id>[^/]+)/server", ProjectServerHandler)]
