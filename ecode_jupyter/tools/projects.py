"""``list_projects`` and ``resolve_project``: how an outside MCP client finds a project.

Every other tool takes a project id; an agent outside Jupyter (an IDE, Claude Desktop) knows a
project by its name or its ``@owner/slug`` URL. These two answer with the projects the caller
is a member of, with their ids and the caller's role, and nothing about the others (a project
the caller cannot see is ``not_found``, as over REST). The server wires a
:class:`ProjectDirectory`; without one (the hub service's schema-only layer) they say so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Protocol

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations
from pydantic import Field

from ecode_jupyter.exceptions import InvalidInput, NotFound
from ecode_jupyter.identity import EcodeUser

if TYPE_CHECKING:
    from ecode_jupyter.tools.server import ToolLayer

#: what a listed project shows: enough to pick one and call the other tools with its id
_SHOWN = ("id", "name", "slug", "owner", "role", "template", "description", "updated_at")
MAX_LISTED = 200


class ProjectDirectory(Protocol):
    """The projects a user may see (the project manager of this server)."""

    async def list_projects(self, user: EcodeUser) -> list[dict[str, Any]]: ...

    async def resolve(self, user: EcodeUser, owner: str, slug: str) -> dict[str, Any]: ...


def _shown(project: dict[str, Any]) -> dict[str, Any]:
    return {key: project.get(key) for key in _SHOWN if key in project}


def register(layer: ToolLayer) -> None:
    def directory() -> ProjectDirectory:
        if layer.directory is None:
            msg = "this server cannot list projects"
            raise NotFound(msg)
        return layer.directory

    @layer.mcp.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def list_projects(ctx: Context | None = None) -> dict[str, Any]:
        """The projects you are a member of (owner, editor or viewer), most recently changed
        first, at most 200: each with its id (the `project` argument of every other tool),
        name, slug, owner and your role."""
        caller = layer.caller(ctx)
        projects = await directory().list_projects(caller.user)
        return {
            "projects": [_shown(p) for p in projects[:MAX_LISTED]],
            "truncated": len(projects) > MAX_LISTED,
        }

    @layer.mcp.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def resolve_project(
        ref: Annotated[
            str,
            Field(
                description="The project's handle, '@owner/slug' (as in its URL "
                "/ecode/@owner/slug), or 'owner/slug'.",
                max_length=200,
            ),
        ],
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Find a project by its @owner/slug handle: its id (the `project` argument of every
        other tool), name and your role. Projects you are not a member of are not found."""
        caller = layer.caller(ctx)
        owner, sep, slug = ref.strip().removeprefix("@").partition("/")
        if not sep or not owner or not slug or "/" in slug:
            msg = f"{ref!r} is not a project handle: use @owner/slug"
            raise InvalidInput(msg)
        return _shown(await directory().resolve(caller.user, owner, slug))
