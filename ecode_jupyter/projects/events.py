"""Project changes on jupyter_server's event bus, for every open Lab (schema in event_schemas/).

A project made from a notebook, the REST API or an outside MCP client appears in a Lab's
sidebar without a reload: the server emits ``project_event`` after each committed change and
Lab, subscribed to ``/api/events/subscribe``, refreshes its list (labextension/src/index.ts).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_ID = "https://events.jupyter.org/ecode_jupyter/project_event/v1"
SCHEMA_PATH = Path(__file__).parent / "event_schemas" / "project_event" / "v1.yaml"


class ProjectEvents:
    """A ``ProjectManager`` change listener that emits on ``serverapp.event_logger``."""

    def __init__(self, event_logger: Any) -> None:
        self._logger = event_logger
        event_logger.register_event_schema(SCHEMA_PATH)

    def __call__(self, action: str, project_id: str) -> None:
        try:
            self._logger.emit(
                schema_id=SCHEMA_ID, data={"action": action, "project_id": project_id}
            )
        except Exception:  # the change is committed; a broken listener must not undo it
            log.exception("emitting a project event failed")
