"""A kernelspec per project in Lab's kernel menu: "Python (My App)".

The generic ``ecode-python`` spec finds its project from the notebook's folder. This adds, on
a server that has the projects' database (not a hub user's server), one spec per project its
owner may run code in (owner or editor): ``ecode-{slug}`` for the owner's own projects,
``ecode-{owner}-{slug}`` for projects shared with them. Each is the ``ecode-python`` spec
with the project's name and ``KERNEL_ECODE_PROJECT`` in its environment, so a notebook
anywhere can run in a given project's kernel (its sandbox, venv, secrets and workspace as
working folder). The provisioner still authorizes whoever starts it: picking another user's
project's spec is refused.

The server's KernelSpecManager is kept (whatever class is configured) and its instance wrapped:
its methods are synchronous and called on every kernel list, so the project list is a cache,
refreshed in the background when a lookup finds it older than a few seconds, never a database
query in the request (a project made a moment ago shows in the next list or the one after).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from jupyter_client.kernelspec import KernelSpec

from ..identity import EcodeUser
from ..projects.manager import ProjectManager
from .host import KERNEL_NAME, PROJECT_ENV

log = logging.getLogger(__name__)

REFRESH_S = 5.0
_UNSAFE = re.compile(r"[^a-z0-9._-]+")


class ProjectKernelSpecs:
    """See the module docstring. ``refresh`` runs on the server's loop; the wrapped methods
    run wherever jupyter_server calls them (the loop's thread)."""

    def __init__(self, projects: ProjectManager, owner: EcodeUser) -> None:
        self.projects = projects
        self.owner = owner
        # kernelspec name -> (project id, display name)
        self.specs: dict[str, tuple[str, str]] = {}
        self._refreshed = -REFRESH_S
        self._refreshing: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        listed = await self.projects.list_projects(self.owner)
        specs: dict[str, tuple[str, str]] = {}
        for project in listed:
            if project.get("role") not in ("owner", "editor"):
                continue  # a viewer's kernel would be refused anyway
            slug = _UNSAFE.sub("-", str(project["slug"]).lower())
            if project["owner"] == self.owner.username:
                name = f"ecode-{slug}"
            else:
                name = f"ecode-{_UNSAFE.sub('-', str(project['owner']).lower())}-{slug}"
            if name == KERNEL_NAME:
                continue  # a project slugged "python" keeps the generic spec's name free
            specs[name] = (str(project["id"]), f"Python ({project['name']})")
        self.specs = specs

    def maybe_refresh(self) -> None:
        """Start a refresh when the cache is old and none is under way (no-op off the loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop.time() - self._refreshed < REFRESH_S:
            return
        if self._refreshing is not None and not self._refreshing.done():
            return
        self._refreshed = loop.time()

        async def refresh() -> None:
            try:
                await self.refresh()
            except Exception:
                log.warning("listing projects for their kernelspecs failed", exc_info=True)

        self._refreshing = loop.create_task(refresh())

    def install(self, manager: Any) -> None:
        """Wrap ``manager``'s lookups so the project specs appear beside the others."""
        base_all = manager.get_all_specs
        base_get = manager.get_kernel_spec
        base_find = manager.find_kernel_specs
        registry = self

        def template() -> tuple[dict[str, Any], str]:
            spec = base_get(KERNEL_NAME)
            return spec.to_dict(), str(spec.resource_dir)

        def project_spec(name: str) -> tuple[dict[str, Any], str] | None:
            found = registry.specs.get(name)
            if found is None:
                return None
            project_id, display = found
            data, resource_dir = template()
            env = {**(data.get("env") or {}), PROJECT_ENV: project_id}
            metadata = {**(data.get("metadata") or {}), "ecode_project": project_id}
            return {**data, "display_name": display, "env": env, "metadata": metadata}, (
                resource_dir
            )

        def find_kernel_specs() -> dict[str, str]:
            registry.maybe_refresh()
            found = dict(base_find())
            if KERNEL_NAME in found:
                for name in registry.specs:
                    found.setdefault(name, found[KERNEL_NAME])
            return found

        def get_kernel_spec(kernel_name: str) -> Any:
            made = project_spec(kernel_name)
            if made is None:
                return base_get(kernel_name)
            data, resource_dir = made
            return KernelSpec(resource_dir=resource_dir, **data)

        def get_all_specs() -> dict[str, Any]:
            registry.maybe_refresh()
            specs = dict(base_all())
            if KERNEL_NAME not in specs:
                return specs  # no generic spec, no project specs
            # (The base method lists names through find_kernel_specs, which is ours now, and
            # reads them as the generic spec: each project's entry is written over.)
            for name in list(registry.specs):
                made = project_spec(name)
                if made is not None:
                    specs[name] = {"resource_dir": made[1], "spec": made[0]}
            return specs

        manager.find_kernel_specs = find_kernel_specs
        manager.get_kernel_spec = get_kernel_spec
        manager.get_all_specs = get_all_specs
