"""Checkpoints and undo: list a project's checkpoints, restore one, undo a run (issue 19).

Each answer says what was put back (``restored``), where a person's edits were kept and the
revert merged in (``merged``), and what was left as it is (``conflicts``, each with the reason,
the text the restore wanted and the merge with conflict markers), so nothing is lost silently.
"""

from __future__ import annotations

from typing import cast

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..checkpoints import CheckpointManager
from ..context import EcodeContext
from ..exceptions import InvalidInput, NotBuilt
from .base import EcodeHandler

PROJECT = r"(?P<project_id>[^/]+)"
CHECKPOINT = r"(?P<checkpoint_id>[^/]+)"
RUN = r"(?P<run_id>[^/]+)"


def _checkpoints(ctx: EcodeContext) -> CheckpointManager:
    manager = ctx.extras.get("checkpoints")
    if manager is None:
        # The hub service keeps no files (they live in users' servers), and retention 0 is off.
        msg = "checkpoints are not kept by this server"
        raise NotBuilt(msg)
    return cast(CheckpointManager, manager)


def _no_body(handler: EcodeHandler) -> None:
    if handler.request.body and handler.json_body():
        msg = "this request takes no fields"
        raise InvalidInput(msg)


class ProjectCheckpointsHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        items = await _checkpoints(self.ecode).list_checkpoints(self.ecode_user, project_id)
        self.finish_json({"checkpoints": items})


class CheckpointRestoreHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def post(self, project_id: str, checkpoint_id: str) -> None:
        _no_body(self)
        result = await _checkpoints(self.ecode).restore(self.ecode_user, project_id, checkpoint_id)
        self.finish_json(result)


class RunUndoHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        _no_body(self)
        self.finish_json(await _checkpoints(self.ecode).undo_run(self.ecode_user, run_id))


default_handlers = [
    (rf"/api/ecode/projects/{PROJECT}/checkpoints", ProjectCheckpointsHandler),
    (
        rf"/api/ecode/projects/{PROJECT}/checkpoints/{CHECKPOINT}/restore",
        CheckpointRestoreHandler,
    ),
    (rf"/api/ecode/runs/{RUN}/undo", RunUndoHandler),
]
