"""Preview tools: start_preview and preview_status, thin wrappers over the deploy manager.

The tool layer does not own previews; a server wires a ``PreviewBackend`` (the deploy
package's functions bound to its context). Without one, the tools answer with a clear error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Protocol

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations
from pydantic import Field

from ecode_jupyter.exceptions import NotFound
from ecode_jupyter.identity import EcodeUser

if TYPE_CHECKING:
    from ecode_jupyter.tools.server import ToolLayer

ProjectId = Annotated[str, Field(description="The project id.")]


class PreviewBackend(Protocol):
    async def start(
        self, user: EcodeUser, project_id: str, command: str | None, restart: bool
    ) -> dict[str, Any]: ...

    async def status(self, user: EcodeUser, project_id: str) -> dict[str, Any]: ...


def register(layer: ToolLayer) -> None:
    from ecode_jupyter.tools import browser

    # check_app opens the preview in a browser: a preview tool, with its own module.
    browser.register(layer)

    def backend() -> PreviewBackend:
        if layer.preview is None:
            msg = "previews are not available in this server (start JupyterLab with E-Code)"
            raise NotFound(msg)
        return layer.preview

    @layer.mcp.tool(annotations=ToolAnnotations(destructive_hint=False, open_world_hint=True))
    async def start_preview(
        project: ProjectId,
        command: Annotated[
            str | None,
            Field(description="Command to serve the app, with {port}; default: detected."),
        ] = None,
        restart: Annotated[bool, Field(description="Restart a running preview.")] = False,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Run the project as a live preview and wait until it answers its health check.
        Returns its state, URL, a local URL commands can reach and the end of its log; fails
        with the reason and the log's tail when the app did not start."""
        proj, caller = await layer.open(ctx, project, write=True)
        await layer.audit(caller, proj, "start_preview", {"command": (command or "")[:200]})
        return await backend().start(caller.user, proj.id, command, restart)

    @layer.mcp.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def preview_status(project: ProjectId, ctx: Context | None = None) -> dict[str, Any]:
        """Whether the project's preview runs, its URL, a live health probe and its recent
        log."""
        proj, caller = await layer.open(ctx, project, write=False)
        return await backend().status(caller.user, proj.id)
