"""Projects: list/create, one project, restore, and slug resolution."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..agent.manager import check_mode, max_credits_micros
from ..agent.modes import validate_mode
from ..db.models import Role
from ..exceptions import InvalidInput
from ..projects.validation import validate_model
from ..ratelimit import RUNS
from .base import AUTH_RESOURCE, EcodeHandler

ID = r"(?P<project_id>[^/]+)"


class ProjectJsonMixin(EcodeHandler):
    @cached_property
    def _browsable_workspace_root(self) -> PurePosixPath | None:
        """The workspace root relative to the server's root dir, or None when outside it.

        Worked out once per request (``workspace_root`` is already resolved), not per project.
        """
        root = Path(self.settings.get("server_root_dir") or "").expanduser().resolve()
        try:
            return PurePosixPath(self.ecode.projects.workspace_root.relative_to(root).as_posix())
        except ValueError:
            return None

    def with_workspace(self, project: dict[str, Any]) -> dict[str, Any]:
        """Add ``workspace_path``: the workspace relative to the server's root dir (what
        Lab's file browser opens), or None when it lies outside it."""
        base = self._browsable_workspace_root
        project["workspace_path"] = None if base is None else str(base / str(project["id"]))
        return project


class ProjectsHandler(ProjectJsonMixin):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        deleted = self.get_query_argument("deleted", "false") == "true"
        # Pages of at most `limit` (default 200), newest activity first; `next_cursor` (None
        # after the last page) goes back as `cursor` for the next one.
        limit = self.query_int("limit", 200, lo=1, hi=1000)
        cursor = self.get_query_argument("cursor", None)
        projects, next_cursor = await self.ecode.projects.list_projects_page(
            self.ecode_user, deleted=deleted, limit=limit, cursor=cursor
        )
        self.finish_json(
            {"projects": [self.with_workspace(p) for p in projects], "next_cursor": next_cursor}
        )

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        unknown = set(body) - {
            "name",
            "template",
            "prompt",
            "model",
            "slug",
            "description",
            "max_credits",
            "mode",
        }
        if unknown:
            msg = f"unknown fields: {', '.join(sorted(unknown))}"
            raise InvalidInput(msg)
        if "name" not in body:
            msg = "name is required"
            raise InvalidInput(msg, field="name")
        validate_mode(body.get("mode"))
        user = self.ecode_user
        agent = self.ecode.extras.get("agent")
        if body.get("prompt") is not None and agent is not None:
            # An unusable model is refused before anything is created.
            model = body.get("model")
            choice = await agent.choose(user, validate_model(model) if model is not None else None)
            max_credits_micros(body.get("max_credits"))  # a bad cap is refused before too
            check_mode(validate_mode(body.get("mode")), choice)  # and a bad mode
            limits = self.ecode.extras.get("limits")
            if limits is not None:
                # Nor is a project created whose run the rate limit would refuse (429).
                await limits.check(user, RUNS)
        project = await self.ecode.projects.create_project(
            user,
            name=body["name"],
            template=body.get("template"),
            prompt=body.get("prompt"),
            model=body.get("model"),
            slug=body.get("slug"),
            description=body.get("description", ""),
        )
        # A prompt starts the agent at once, when the agent is installed in this server.
        if project["prompt"] and agent is not None:
            run = await agent.start_run(
                user,
                project["id"],
                project["prompt"],
                project["model"],
                max_credits=body.get("max_credits"),
                mode=body.get("mode"),
            )
            project["run"] = run
        self.set_header("Location", self.base_url + f"api/ecode/projects/{project['id']}")
        self.finish_json(self.with_workspace(project), status=201)


class ProjectHandler(ProjectJsonMixin):
    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        project = await self.ecode.projects.get_project(self.ecode_user, project_id)
        gpus = self.ecode.extras.get("gpus")
        if gpus is not None:
            # The GPUs its kernels hold now, for whoever may see the project.
            project["gpu_leases"] = await gpus.project_leases(project["id"])
        self.finish_json(self.with_workspace(project))

    @web.authenticated
    @authorized
    async def patch(self, project_id: str) -> None:
        changes = self.json_body()
        project = await self.ecode.projects.update_project(self.ecode_user, project_id, changes)
        self.finish_json(self.with_workspace(project))

    @web.authenticated
    @authorized
    async def delete(self, project_id: str) -> None:
        user = self.ecode_user
        agent = self.ecode.extras.get("agent")
        if agent is not None:
            # Only an owner may delete: check first, then stop the project's active runs so
            # they do not go on writing into a deleted project.
            await self.ecode.projects.get_project(user, project_id, Role.owner)
            for run in await agent.list_runs(user, project_id):
                if run["status"] in ("queued", "running"):
                    await agent.cancel_run(user, run["id"])
        project = await self.ecode.projects.delete_project(user, project_id)
        # Its apps stop now, not at the deploy manager's next poll, and its kernels with them
        # (a deleted project's code must not go on running, nor its secrets stay loaded).
        deploy = self.ecode.extras.get("deploy")
        if deploy is not None:
            await deploy.stop_project(project["id"])
        kernels = self.ecode.extras.get("kernels")
        if kernels is not None:
            await kernels.shutdown_project(project["id"])
        self.finish_json(project)


class ProjectRestoreHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def post(self, project_id: str) -> None:
        project = await self.ecode.projects.restore_project(self.ecode_user, project_id)
        self.finish_json(project)


class SlugHandler(ProjectJsonMixin):
    @web.authenticated
    @authorized
    async def get(self, owner: str, slug: str) -> None:
        project = await self.ecode.projects.resolve_slug(self.ecode_user, owner, slug)
        self.finish_json(self.with_workspace(project))


class TemplatesHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        from ..projects.templating import list_templates

        self.finish_json({"templates": [t.to_json() for t in list_templates()]})


_ = AUTH_RESOURCE
default_handlers = [
    (r"/api/ecode/projects", ProjectsHandler),
    (rf"/api/ecode/projects/{ID}", ProjectHandler),
    (rf"/api/ecode/projects/{ID}/restore", ProjectRestoreHandler),
    (r"/api/ecode/by-slug/@(?P<owner>[^/]+)/(?P<slug>[^/]+)", SlugHandler),
    (r"/api/ecode/templates", TemplatesHandler),
]
