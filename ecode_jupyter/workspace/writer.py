"""The one writer: every change a tool makes to a project's files goes through here.

- Atomic on disk: a temporary file in the same folder, fsync, ``os.replace`` (the file mode is
  kept), so a reader never sees half a file and a crash never leaves one.
- Through the live Y document when the file or notebook is open in a jupyter-collaboration
  room: only the changed spans of the shared text are replaced, so every editor sees the change
  at once and what a person is typing elsewhere in the file survives. The room is then asked to
  save, so a command run right after sees the new content on disk.
- Refuses to replace non-empty content with nothing unless ``allow_empty=True`` (a model that
  lost the content it meant to write must not wipe a file).
- Reports every change to ``on_change`` as a :class:`FileChange` (the agent turns it into a
  ``file.changed`` event).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import re
import stat
import tempfile
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pycrdt import Text

from ecode_jupyter.exceptions import Conflict, InvalidInput, NotFound
from ecode_jupyter.workspace.collab import DocumentKind, LiveDocument, LiveDocuments
from ecode_jupyter.workspace.diffs import (
    DEFAULT_DIFF_CAP_CHARS,
    TextEdit,
    apply_edits,
    summarize,
    text_edits,
)
from ecode_jupyter.workspace.paths import (
    check_relative,
    check_writable,
    resolve_in_workspace,
    workspace_relative,
)
from ecode_jupyter.workspace.reading import read_capped

log = logging.getLogger(__name__)

ChangeAction = Literal["created", "modified", "deleted", "unchanged"]
CellAction = Literal["replace", "insert", "delete"]
CellType = Literal["code", "markdown", "raw"]

# A model writing tens of megabytes as "text" is a mistake, not a project file.
DEFAULT_MAX_TEXT_BYTES = 10 * 1024 * 1024
NEW_FILE_MODE = 0o644


@dataclass(frozen=True)
class FileChange:
    """One change to one file, as the ``file.changed`` event reports it."""

    path: str
    action: ChangeAction
    added: int
    removed: int
    diff: str
    live: bool = False  # written through a collaboration room

    def event_data(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "action": self.action,
            "added": self.added,
            "removed": self.removed,
            "diff": self.diff,
        }


ChangeCallback = Callable[[FileChange], Awaitable[None] | None]

# One lock per real path across writers, so two concurrent edits of one file serialize
# their read-modify-write instead of losing one of them.
_path_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _lock_for(path: Path) -> asyncio.Lock:
    key = str(path)
    lock = _path_locks.get(key)
    if lock is None:
        lock = asyncio.Lock()
        _path_locks[key] = lock
    return lock


# Temporary files of atomic writes: ".{name}.{pid}.{8 random}.ecode.tmp" next to the target.
TEMP_SUFFIX = ".ecode.tmp"
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}\.ecode\.tmp$")
# Before the pid was in the name: ".{name}.{8 random}.tmp", removed only beside its target.
_LEGACY_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")
# Folders the sweep does not enter: the writer never writes there (.git is refused), and
# they can hold many thousands of files.
_SWEEP_SKIPS = frozenset({".git", "node_modules", "__pycache__"})
# Temporary files this process is writing right now (the sweep leaves them alone).
_in_flight: set[str] = set()


def atomic_write_bytes(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically; return whether the file was created.

    Blocking; call it in a thread. The temporary file lives in the target's folder so
    ``os.replace`` is a same-file-system rename; the folder is fsynced so the rename survives a
    crash. Parent folders are created as needed.
    """
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    try:
        st = path.stat()
    except FileNotFoundError:
        mode, created = NEW_FILE_MODE, True
    else:
        if stat.S_ISDIR(st.st_mode):
            msg = f"{path.name} is a directory"
            raise InvalidInput(msg)
        mode, created = stat.S_IMODE(st.st_mode), False
    # The writer's pid in the name: a start-up sweep (remove_interrupted_writes) can tell a
    # temporary file whose writer was killed from one a live server is writing now.
    fd, tmp_name = tempfile.mkstemp(
        dir=parent, prefix=f".{path.name[:40]}.{os.getpid()}.", suffix=TEMP_SUFFIX
    )
    _in_flight.add(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    finally:
        _in_flight.discard(tmp_name)
    dir_fd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return created


def _writer_gone(pid: int) -> bool:
    if pid == os.getpid():
        return True  # ours, and not in flight (checked by the caller): a previous life's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a live process of another user
    return False


def _interrupted_write(folder: str, name: str) -> bool:
    """Whether ``name`` in ``folder`` is the temporary file of a write whose writer died."""
    found = _TEMP_NAME.match(name)
    if found is not None:
        path = os.path.join(folder, name)
        return path not in _in_flight and _writer_gone(int(found["pid"]))
    legacy = _LEGACY_TEMP_NAME.match(name)
    # An older writer's name says nothing of its writer; only beside its target file is it
    # surely one (a user's own ".notes.abcdefgh.tmp" alone is left alone).
    return legacy is not None and os.path.isfile(os.path.join(folder, legacy["name"]))


def remove_interrupted_writes(root: Path) -> list[Path]:
    """Delete the temporary files that writes killed mid-way (a crash, ``kill -9``) left
    under ``root``; returns what was removed. Blocking: run it in a thread at start-up.

    A write's temporary file is renamed over its target or unlinked by the writer itself,
    so one that stays has lost its writer: the sweep removes those whose writer process is
    gone, never a file another live server is writing. Symlinks are not followed.
    """
    removed: list[Path] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SWEEP_SKIPS]
        for name in filenames:
            if not name.endswith(".tmp") or not _interrupted_write(folder, name):
                continue
            path = os.path.join(folder, name)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                os.unlink(path)
            except OSError:
                continue
            removed.append(Path(path))
    if removed:
        log.info("removed %d temporary files of interrupted writes under %s", len(removed), root)
    return removed


def _read_bytes(path: Path, max_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> bytes | None:
    # Capped like writes: editing a file means holding it (and its diff) whole in memory.
    return read_capped(path, max_bytes, path.name)


def _decode(data: bytes, rel: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{rel} is not UTF-8 text"
        raise InvalidInput(msg) from exc


def _byte_offsets(old: str, edit: TextEdit) -> tuple[int, int]:
    # pycrdt indexes Y text by UTF-8 bytes, not by Python characters.
    start = len(old[: edit.start].encode("utf-8"))
    return start, start + len(old[edit.start : edit.end].encode("utf-8"))


def apply_to_ytext(ydoc: Any, ytext: Text, old: str, edits: list[TextEdit]) -> None:
    """Apply ``edits`` (planned against ``old``) to ``ytext`` in one transaction.

    Applied back to front so each edit's offsets, computed on ``old``, are still valid.
    """
    with ydoc.transaction():
        for edit in reversed(edits):
            start, end = _byte_offsets(old, edit)
            if end > start:
                del ytext[start:end]
            if edit.text:
                ytext.insert(start, edit.text)


class WorkspaceWriter:
    """Reads and writes files of one workspace; see the module docstring.

    ``live`` finds open collaborative documents (``None``: disk only, e.g. without a Jupyter
    server). ``on_change`` receives each :class:`FileChange`; an exception it raises is logged,
    never propagated (the change has happened).
    """

    def __init__(
        self,
        root: Path,
        *,
        live: LiveDocuments | None = None,
        on_change: ChangeCallback | None = None,
        diff_cap_chars: int = DEFAULT_DIFF_CAP_CHARS,
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    ) -> None:
        self.root = Path(os.path.realpath(root))
        self._live = live
        self._on_change = on_change
        self._diff_cap = diff_cap_chars
        self._max_text_bytes = max_text_bytes

    # -- paths ---------------------------------------------------------------------------

    def resolve(self, rel: str) -> Path:
        return resolve_in_workspace(self.root, rel)

    def relative(self, path: Path) -> str:
        return workspace_relative(self.root, path)

    def resolve_for_write(self, rel: str) -> Path:
        """``resolve``, refusing the folders no tool writes in (``.git``, ``.ecode``)."""
        path = self.resolve(rel)
        check_writable(self.root, path, rel)
        return path

    async def _live_document(self, path: Path, kind: DocumentKind) -> LiveDocument | None:
        if self._live is None:
            return None
        return await self._live.open_document(path, kind)

    # -- text files ----------------------------------------------------------------------

    async def read_text(self, rel: str) -> str:
        """The current text of a file: the live document's if open, else the disk's."""
        path = self.resolve(rel)
        live = await self._live_document(path, "file")
        if live is not None:
            return str(live.document.ydoc.get("source", type=Text))
        data = await asyncio.to_thread(_read_bytes, path, self._max_text_bytes)
        if data is None:
            msg = f"{self.relative(path)} does not exist"
            raise NotFound(msg)
        return _decode(data, self.relative(path))

    async def write_text(self, rel: str, content: str, *, allow_empty: bool = False) -> FileChange:
        """Replace a file's whole text (creating it and its folders if needed)."""
        return await self.edit_text(rel, lambda _old: content, allow_empty=allow_empty)

    async def edit_text(
        self,
        rel: str,
        transform: Callable[[str | None], str],
        *,
        allow_empty: bool = False,
    ) -> FileChange:
        """Read the current text, apply ``transform`` (``None`` for a missing file), write.

        ``transform`` runs on the content as it is at write time (for a live document, in the
        same event-loop step as the write), so no edit made in between is reverted. It may raise
        an ``EcodeError`` to refuse (e.g. edit_file's "text not found").
        """
        path = self.resolve_for_write(rel)
        shown = self.relative(path)
        async with _lock_for(path):
            live = await self._live_document(path, "file")
            notebook = None
            if live is None and path.suffix == ".ipynb":
                notebook = await self._live_document(path, "notebook")
            if live is not None:
                change = await self._edit_live_text(live, shown, transform, allow_empty)
            elif notebook is not None:
                change = await self._edit_live_notebook_json(notebook, shown, transform)
            else:
                change = await self._edit_disk_text(path, shown, transform, allow_empty)
        await self._emit(change)
        return change

    def _check_new_content(self, old: str | None, new: str, shown: str, allow_empty: bool) -> None:
        size = len(new.encode("utf-8"))
        if size > self._max_text_bytes:
            msg = f"refusing to write {size} bytes to {shown}: over {self._max_text_bytes}"
            raise InvalidInput(msg)
        if new == "" and old and not allow_empty:
            msg = (
                f"refusing to replace the non-empty {shown} with empty content; "
                "pass allow_empty=true if that is intended"
            )
            raise Conflict(msg)

    async def _edit_disk_text(
        self,
        path: Path,
        shown: str,
        transform: Callable[[str | None], str],
        allow_empty: bool,
    ) -> FileChange:
        data = await asyncio.to_thread(_read_bytes, path, self._max_text_bytes)
        old: str | None
        binary_before = False
        if data is None:
            old = None
        else:
            try:
                old = data.decode("utf-8")
            except UnicodeDecodeError:
                # A binary file may be replaced by text, but never "edited" as text.
                old, binary_before = None, True
        new = transform(old)
        # Binary content counts as non-empty for the "never wipe a file" rule.
        self._check_new_content("\0" if binary_before else old, new, shown, allow_empty)
        if old == new:
            return FileChange(shown, "unchanged", 0, 0, "")
        created = await asyncio.to_thread(atomic_write_bytes, path, new.encode("utf-8"))
        summary = await asyncio.to_thread(
            summarize, old or "", new, shown, cap_chars=self._diff_cap
        )
        diff = summary.diff
        if binary_before:
            diff = f"(binary content of {shown} replaced with text)\n" + diff
        action: ChangeAction = "created" if created else "modified"
        return FileChange(shown, action, summary.added, summary.removed, diff)

    async def _edit_live_text(
        self,
        live: LiveDocument,
        shown: str,
        transform: Callable[[str | None], str],
        allow_empty: bool,
    ) -> FileChange:
        ydoc = live.document.ydoc
        ytext = ydoc.get("source", type=Text)
        # Plan on a snapshot in a thread (diffing a large file must not stall the server), then
        # apply only if nobody changed the text meanwhile; otherwise plan again on the new text.
        for _attempt in range(3):
            old = str(ytext)
            new = transform(old)
            self._check_new_content(old, new, shown, allow_empty)
            if old == new:
                return FileChange(shown, "unchanged", 0, 0, "", live=True)
            edits = await asyncio.to_thread(text_edits, old, new)
            if str(ytext) == old:
                break
        else:
            # Still racing a busy typist: plan and apply in one step on the loop.
            old = str(ytext)
            new = transform(old)
            self._check_new_content(old, new, shown, allow_empty)
            edits = text_edits(old, new)
        if apply_edits(old, edits) != new:  # a planning bug must never corrupt a document
            msg = f"internal error planning the edit of {shown}"
            raise RuntimeError(msg)
        apply_to_ytext(ydoc, ytext, old, edits)
        await live.flush()
        summary = await asyncio.to_thread(summarize, old, new, shown, cap_chars=self._diff_cap)
        return FileChange(shown, "modified", summary.added, summary.removed, summary.diff, True)

    async def report_external_change(
        self, rel: str, before: str | None, after: str | None
    ) -> FileChange:
        """Report a change a program made behind the writer's back (npm editing package.json).

        The writer did not make it, but whoever watches ``file.changed`` must still see it.
        """
        shown = self.relative(self.resolve(rel))
        if before == after:
            return FileChange(shown, "unchanged", 0, 0, "")
        action: ChangeAction = (
            "created" if before is None else "deleted" if after is None else "modified"
        )
        summary = await asyncio.to_thread(
            summarize, before or "", after or "", shown, cap_chars=self._diff_cap
        )
        change = FileChange(shown, action, summary.added, summary.removed, summary.diff)
        await self._emit(change)
        return change

    async def _edit_live_notebook_json(
        self, live: LiveDocument, shown: str, transform: Callable[[str | None], str]
    ) -> FileChange:
        """A whole-notebook write (write_file on an open .ipynb) through its live document.

        Writing the JSON to disk would make the room reload it and drop what people are typing;
        instead each cell is updated in place — sources by their changed spans — and cells
        added, removed or reordered by their ids.
        """
        doc = live.document
        old = _dump_notebook(doc.get())
        new = transform(old)
        self._check_new_content(old, new, shown, allow_empty=False)
        if new == old:
            return FileChange(shown, "unchanged", 0, 0, "", live=True)
        nb = _parse_notebook(new, shown)
        by_id = {ycell.get("id"): ycell for ycell in doc.ycells}
        with doc.ydoc.transaction():
            for cell in nb["cells"]:
                ycell = by_id.get(cell.get("id"))
                if ycell is not None and ycell.get("cell_type") == cell.get("cell_type"):
                    before = str(ycell["source"])
                    source = _source_text(cell)
                    apply_to_ytext(doc.ydoc, ycell["source"], before, text_edits(before, source))
                    cell["source"] = source
            # What is left (metadata, outputs, new/removed/moved cells) jupyter_ydoc applies,
            # keeping every cell whose content now matches.
            doc.set(nb)
        await live.flush()
        summary = await asyncio.to_thread(summarize, old, new, shown, cap_chars=self._diff_cap)
        return FileChange(shown, "modified", summary.added, summary.removed, summary.diff, True)

    # -- deleting ------------------------------------------------------------------------

    async def delete(self, rel: str) -> FileChange:
        """Delete a file (or a symlink inside the workspace; never its target)."""
        path = self.resolve_for_write(rel)
        clean = check_relative(rel)
        if path == self.root:
            msg = "refusing to delete the workspace itself"
            raise InvalidInput(msg)
        # The link itself, when the last component is one: its parent is resolved (inside).
        lexical = self.resolve(clean.parent.as_posix()) / clean.name
        target = lexical if lexical.is_symlink() else path
        shown = clean.as_posix()
        async with _lock_for(path):
            data = await asyncio.to_thread(self._unlink, target, shown)
        old = ""
        if data is not None:
            with contextlib.suppress(UnicodeDecodeError):
                old = data.decode("utf-8")
        summary = await asyncio.to_thread(summarize, old, "", shown, cap_chars=self._diff_cap)
        change = FileChange(shown, "deleted", 0, summary.removed, summary.diff)
        await self._emit(change)
        return change

    @staticmethod
    def _unlink(target: Path, shown: str) -> bytes | None:
        if target.is_symlink():
            target.unlink()
            return None
        if not target.exists():
            msg = f"{shown} does not exist"
            raise NotFound(msg)
        if target.is_dir():
            msg = f"{shown} is a directory; delete the files in it"
            raise InvalidInput(msg)
        data = target.read_bytes() if target.stat().st_size <= DEFAULT_MAX_TEXT_BYTES else None
        target.unlink()
        return data

    # -- notebooks -----------------------------------------------------------------------

    async def read_notebook(self, rel: str) -> dict[str, Any]:
        """The notebook as nbformat JSON: the live document's if open, else the disk's."""
        path = self.resolve(rel)
        live = await self._live_document(path, "notebook")
        if live is not None:
            nb: dict[str, Any] = live.document.get()
            return nb
        data = await asyncio.to_thread(_read_bytes, path, self._max_text_bytes)
        if data is None:
            msg = f"{self.relative(path)} does not exist"
            raise NotFound(msg)
        return _parse_notebook(_decode(data, self.relative(path)), self.relative(path))

    async def edit_notebook_cell(
        self,
        rel: str,
        index: int,
        *,
        action: CellAction = "replace",
        source: str | None = None,
        cell_type: CellType | None = None,
    ) -> FileChange:
        """Replace, insert (before ``index``; ``index == len`` appends) or delete one cell."""
        path = self.resolve_for_write(rel)
        shown = self.relative(path)
        if action != "delete" and source is None:
            msg = f"action {action!r} needs a source"
            raise InvalidInput(msg)
        async with _lock_for(path):
            live = await self._live_document(path, "notebook")
            if live is not None:
                before, after = self._edit_live_cell(live, shown, index, action, source, cell_type)
                await live.flush()
            else:
                before, after = await self._edit_disk_cell(
                    path, shown, index, action, source, cell_type
                )
        label = f"{shown}#cell{index}"
        summary = await asyncio.to_thread(summarize, before, after, label, cap_chars=self._diff_cap)
        change = FileChange(
            shown, "modified", summary.added, summary.removed, summary.diff, live is not None
        )
        await self._emit(change)
        return change

    @staticmethod
    def _check_index(index: int, count: int, action: CellAction, shown: str) -> None:
        upper = count if action == "insert" else count - 1
        if index < 0 or index > upper:
            msg = f"cell index {index} is out of range for {shown} ({count} cells)"
            raise InvalidInput(msg)

    def _edit_live_cell(
        self,
        live: LiveDocument,
        shown: str,
        index: int,
        action: CellAction,
        source: str | None,
        cell_type: CellType | None,
    ) -> tuple[str, str]:
        # Synchronous on purpose: read and write in one event-loop step, no await in between.
        doc = live.document
        ycells = doc.ycells
        self._check_index(index, len(ycells), action, shown)
        if action == "insert":
            assert source is not None
            doc.ycells.insert(index, doc.create_ycell(_new_cell(cell_type or "code", source)))
            return "", source
        ycell = ycells[index]
        before = str(ycell["source"])
        if action == "delete":
            ycells.pop(index)
            return before, ""
        assert source is not None
        if cell_type is not None and cell_type != ycell["cell_type"]:
            doc.set_cell(index, _new_cell(cell_type, source))
        else:
            apply_to_ytext(doc.ydoc, ycell["source"], before, text_edits(before, source))
        return before, source

    async def _edit_disk_cell(
        self,
        path: Path,
        shown: str,
        index: int,
        action: CellAction,
        source: str | None,
        cell_type: CellType | None,
    ) -> tuple[str, str]:
        data = await asyncio.to_thread(_read_bytes, path, self._max_text_bytes)
        if data is None:
            msg = f"{shown} does not exist"
            raise NotFound(msg)
        nb = _parse_notebook(_decode(data, shown), shown)
        cells = nb["cells"]
        self._check_index(index, len(cells), action, shown)
        if action == "insert":
            assert source is not None
            cell = _new_cell(cell_type or "code", source)
            if nb.get("nbformat_minor", 0) < 5:
                cell.pop("id", None)  # ids are invalid before nbformat 4.5
            cells.insert(index, cell)
            before, after = "", source
        elif action == "delete":
            before, after = _source_text(cells.pop(index)), ""
        else:
            assert source is not None
            cell = cells[index]
            before, after = _source_text(cell), source
            if cell_type is not None and cell_type != cell["cell_type"]:
                replacement = _new_cell(cell_type, source)
                if "id" in cell:
                    replacement["id"] = cell["id"]
                else:
                    replacement.pop("id", None)
                cells[index] = replacement
            else:
                cell["source"] = source
        text = _dump_notebook(nb)
        await asyncio.to_thread(atomic_write_bytes, path, text.encode("utf-8"))
        return before, after

    # -- events --------------------------------------------------------------------------

    async def _emit(self, change: FileChange) -> None:
        if self._on_change is None or change.action == "unchanged":
            return
        try:
            result = self._on_change(change)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("file change listener failed for %s", change.path)


def _parse_notebook(text: str, shown: str) -> dict[str, Any]:
    try:
        nb = json.loads(text)
    except ValueError as exc:
        msg = f"{shown} is not a valid notebook: {exc}"
        raise InvalidInput(msg) from exc
    if not isinstance(nb, dict) or nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list):
        msg = f"{shown} is not a valid notebook: expected nbformat 4 JSON with a cells list"
        raise InvalidInput(msg)
    return nb


def _dump_notebook(nb: dict[str, Any]) -> str:
    # nbformat's own layout, so a notebook saved by Jupyter and by us diffs cleanly.
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _source_text(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _new_cell(cell_type: CellType, source: str) -> dict[str, Any]:
    """A cell as nbformat 4.5 writes it (ids are 8 hex characters there too)."""
    if cell_type not in ("code", "markdown", "raw"):
        msg = f"unknown cell type {cell_type!r}"
        raise InvalidInput(msg)
    cell: dict[str, Any] = {
        "cell_type": cell_type,
        "id": uuid.uuid4().hex[:8],
        "metadata": {},
        "source": source,
    }
    if cell_type == "code":
        cell["execution_count"] = None
        cell["outputs"] = []
    return cell
