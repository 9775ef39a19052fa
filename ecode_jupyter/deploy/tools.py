"""``start_preview`` and ``preview_status`` for the tool layer (MCP and the agent).

The tool layer wraps these two functions as the MCP tools of the same names. Both act as the
calling user (editor role on the project) and return plain JSON-able dicts fit for a model:
state, URL, a local URL the agent's commands can reach, and the tail of the app's log.
"""

from __future__ import annotations

from typing import Any, cast

from ..context import EcodeContext
from ..exceptions import EcodeError, NotFound
from ..identity import EcodeUser
from .manager import DeployManager


class PreviewFailed(EcodeError):
    """The preview did not answer its health check; the message carries its log's tail."""

    status = 422
    code = "preview_failed"


def _manager(ctx: EcodeContext) -> DeployManager:
    manager = ctx.extras.get("deploy")
    if manager is None:
        msg = "previews are not enabled on this server"
        raise NotFound(msg)
    return cast(DeployManager, manager)


async def start_preview(
    ctx: EcodeContext,
    user: EcodeUser,
    project_id: str,
    command: str | None = None,
    restart: bool = False,
) -> dict[str, Any]:
    """Run the project as a live preview and wait until it answers (or fails to start).

    The command is found from the project (template, Procfile, framework) unless given; it
    may use ``{port}`` (or ``$PORT``). A preview already running is kept (it reloads on
    save) unless ``restart`` is set. Returns the deployment (``status`` ``running``, ``url``,
    ``local_url``, ``log_tail``); raises :class:`PreviewFailed` with the reason and the end of
    the app's log when it did not answer (it keeps retrying, and restarts when a file is
    saved, so fixing the code is enough).
    """
    result = await _manager(ctx).start_preview(user, project_id, command=command, restart=restart)
    if result["status"] != "running":
        tail = "\n".join(result.get("log_tail") or [])
        msg = f"the preview did not start: {result.get('reason')}\n--- end of its log ---\n{tail}"
        raise PreviewFailed(msg, deployment=result["id"], url=result.get("url"))
    return result


async def preview_status(ctx: EcodeContext, user: EcodeUser, project_id: str) -> dict[str, Any]:
    """Whether the project's preview runs, its URL, a live health probe and its recent log."""
    return await _manager(ctx).preview_status(user, project_id)
