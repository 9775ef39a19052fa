"""Finding the live collaborative document of a file, without opening one.

When a person has a file or notebook open in JupyterLab with jupyter-collaboration, the truth
is the shared Y document in the server's room, not the file on disk (the room saves to disk a
second later, and overwrites out-of-band disk changes). The writer asks a
:class:`LiveDocuments` for the room's document; ``None`` means nobody has it open and the disk
is the truth.

Only rooms that already exist are returned: looking a file up must never create a room (that
would start a file watcher and a store for every file an agent touches).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

DocumentKind = Literal["file", "notebook"]

# (file_format, content_type) as jupyter-collaboration encodes them in room ids.
_ROOM_FORMATS: dict[DocumentKind, tuple[str, str]] = {
    "file": ("text", "file"),
    "notebook": ("json", "notebook"),
}


@dataclass
class LiveDocument:
    """A room's shared document and a way to make the room save it to disk now.

    ``document`` is the jupyter_ydoc model attached to the room (``YUnicode`` for text files,
    ``YNotebook`` for notebooks); edits to it reach every connected editor at once.
    """

    document: Any
    flush: Callable[[], Awaitable[None]]


class LiveDocuments(Protocol):
    """Where the writer looks for open collaborative documents. Called by the writer only."""

    async def open_document(self, path: Path, kind: DocumentKind) -> LiveDocument | None:
        """The live document of ``path`` (absolute, resolved) if a room has it open."""
        ...


class JupyterLiveDocuments:
    """:class:`LiveDocuments` backed by jupyter-collaboration in this Jupyter server.

    ``settings`` is the server's ``web_app.settings`` (where ``jupyter_server_ydoc`` and
    ``file_id_manager`` register themselves); ``root_dir`` is the contents manager's root,
    since rooms are keyed by the file id of the path relative to it.
    """

    def __init__(
        self,
        settings: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        root_dir: Path,
        ready_timeout_s: float = 5.0,
    ):
        # A callable defers the lookup: extensions load before the web app settings exist.
        self._settings = settings
        self._root = Path(os.path.realpath(root_dir))
        self._ready_timeout_s = ready_timeout_s

    async def open_document(self, path: Path, kind: DocumentKind) -> LiveDocument | None:
        settings = self._settings() if callable(self._settings) else self._settings
        ydoc_ext = settings.get("jupyter_server_ydoc")
        file_ids = settings.get("file_id_manager")
        if ydoc_ext is None or file_ids is None:
            return None
        if not path.is_relative_to(self._root):
            # Rooms only exist for files the contents manager serves.
            return None
        api_path = path.relative_to(self._root).as_posix()
        # get_id never indexes a new file (index() would); no id means no room ever existed.
        file_id = file_ids.get_id(api_path)
        if not file_id:
            return None
        file_format, content_type = _ROOM_FORMATS[kind]
        room_id = f"{file_format}:{content_type}:{file_id}"
        room = ydoc_ext.ywebsocket_server.rooms.get(room_id)
        if room is None:
            return None
        await self._wait_ready(room, room_id)
        document = await ydoc_ext.get_document(room_id=room_id, copy=False, create=False)
        if document is None:
            return None
        return LiveDocument(document=document, flush=lambda: _save_room_now(room))

    async def _wait_ready(self, room: Any, room_id: str) -> None:
        # A room that is still loading the file would merge our edit with the load; wait.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ready_timeout_s
        while not getattr(room, "ready", True):
            if loop.time() > deadline:
                log.warning(
                    "room %s is not ready after %.1fs; writing anyway",
                    room_id,
                    self._ready_timeout_s,
                )
                return
            await asyncio.sleep(0.02)


# Manual saves asked for again while the room is busy applying an update.
SAVE_ATTEMPTS = 5


async def _save_room_now(room: Any) -> None:
    """Make the room write its document to disk now instead of after its autosave delay.

    A command run right after a tool's write must see the new content on disk. The room's
    manual-save entry point is private in jupyter-collaboration 5 (``_save_to_disc``, what the
    frontend's Ctrl+S triggers); where it is missing or busy, the autosave still happens after
    the room's ``document_save_delay``, so we wait for that instead.
    """
    save = getattr(room, "_save_to_disc", None)
    for _ in range(SAVE_ATTEMPTS):
        task = save() if callable(save) else None
        if task is not None:
            await task
            return
        # The room refuses a manual save while it applies an update (a collaborator's
        # concurrent edit holds its update lock): wait that update out and ask again,
        # instead of returning before anything reached the disk.
        lock = getattr(room, "_update_lock", None)
        if not isinstance(lock, asyncio.Lock) or not lock.locked():
            break
        async with lock:
            pass
    pending = getattr(room, "_saving_document", None)
    if isinstance(pending, asyncio.Task) and not pending.done():
        await asyncio.wait({pending}, timeout=(getattr(room, "_save_delay", None) or 1.0) + 2.0)
