"""A project's kernels: list them, and warm the pool when Lab opens the project.

``GET projects/{id}/kernels`` (viewers too): the project's kernels as ``/api/kernels``
models, each with ``pooled`` (started ahead, not yet claimed). ``POST
projects/{id}/kernels/warm`` (editors: the kernel gets the project's secrets): start filling
the project's warm pool in the background; answers 202 at once with what is ready.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..db.models import Role
from ..exceptions import NotFound
from ..kernels.server import ServerKernels
from .base import EcodeHandler
from .projects import ID


class _KernelsHandler(EcodeHandler):
    @property
    def kernels(self) -> ServerKernels:
        kernels = self.ecode.extras.get("kernels")
        if not isinstance(kernels, ServerKernels):
            msg = "project kernels are not served here"
            raise NotFound(msg)
        return kernels


class ProjectKernelsHandler(_KernelsHandler):
    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        project = await self.ecode.projects.get_project(self.ecode_user, project_id, Role.viewer)
        kernels = self.kernels
        self.finish_json(
            {"kernels": kernels.project_kernels(str(project["id"])), "pool": self._pool(kernels)}
        )

    @staticmethod
    def _pool(kernels: ServerKernels) -> dict[str, Any]:
        return {"size": kernels.pool.size, "limit": kernels.pool.limit}


class WarmKernelsHandler(_KernelsHandler):
    @web.authenticated
    @authorized
    async def post(self, project_id: str) -> None:
        kernels = self.kernels
        user = self.ecode_user
        project = await kernels.host.access.open(user, project_id, write=True)
        kernels.pool.warm(project, user)
        ready = len(kernels.pool.ready(project.id))
        answer = {"ready": ready, "size": kernels.pool.size, "enabled": kernels.pool.enabled}
        self.finish_json(answer, status=202)


default_handlers = [
    (rf"/api/ecode/projects/{ID}/kernels", ProjectKernelsHandler),
    (rf"/api/ecode/projects/{ID}/kernels/warm", WarmKernelsHandler),
]
