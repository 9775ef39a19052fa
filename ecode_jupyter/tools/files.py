"""File tools: list_files, read_file, write_file, edit_file, delete_file, search_files.

Every path goes through the workspace resolver; every write through the one writer (so a file
open in JupyterLab is edited live, and each change is reported). Reads are bounded: a line
range, a byte cap, and binary files are described rather than dumped.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import mimetypes
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from ecode_jupyter.exceptions import Conflict, EcodeError, InvalidInput, NotFound
from ecode_jupyter.workspace.paths import resolve_in_workspace, workspace_relative
from ecode_jupyter.workspace.reading import (
    BINARY_SNIFF_BYTES,
    DEFAULT_MAX_LINE_BYTES,
    SKIP_DIRS,
    cut_line,
    looks_binary,
    read_capped,
    read_line_window,
)
from ecode_jupyter.workspace.search import SearchBudget, compile_pattern, search_workspace
from ecode_jupyter.workspace.writer import FileChange

if TYPE_CHECKING:
    from ecode_jupyter.tools.server import ToolLayer

log = logging.getLogger(__name__)

ProjectId = Annotated[str, Field(description="The project id.")]
RelPath = Annotated[str, Field(description="Path relative to the project workspace.")]

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_IMAGE_BYTES = 2 * 1024 * 1024
SEARCH_DEADLINE_S = 20.0
MAX_RESOURCE_BYTES = 10 * 1024 * 1024
# Files as MCP resources: what resource links (e.g. a long execute_code output) point at.
FILE_RESOURCE_TEMPLATE = "ecode://projects/{project}/files/{+path}"


def file_resource_uri(project_id: str, rel: str) -> str:
    return f"ecode://projects/{project_id}/files/{rel}"


def change_result(change: FileChange) -> dict[str, Any]:
    return {
        "path": change.path,
        "action": change.action,
        "added": change.added,
        "removed": change.removed,
        "diff": change.diff,
        "live": change.live,
    }


def _entry(root: Path, path: Path, entry: os.DirEntry[str]) -> dict[str, Any]:
    rel = workspace_relative(root, path)
    if entry.is_symlink():
        return {"path": rel, "type": "symlink", "size": None}
    if entry.is_dir():
        return {"path": rel, "type": "directory", "size": None}
    return {"path": rel, "type": "file", "size": entry.stat().st_size}


def _list(root: Path, start: Path, recursive: bool, hidden: bool, cap: int) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    truncated = False
    pending = [start]
    while pending and not truncated:
        folder = pending.pop(0)
        try:
            items = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            log.debug("cannot list %s: %s", folder, exc)
            continue
        for item in items:
            if not hidden and item.name.startswith("."):
                continue
            if len(entries) >= cap:
                truncated = True
                break
            path = Path(item.path)
            entries.append(_entry(root, path, item))
            # Never follow a symlinked folder: it may point anywhere, or loop.
            if recursive and item.is_dir(follow_symlinks=False) and item.name not in SKIP_DIRS:
                pending.append(path)
    return {
        "path": workspace_relative(root, start),
        "entries": entries,
        "truncated": truncated,
    }


def _render_read(
    shown: str, lines: list[str], start: int, total: int, cut: bool, max_bytes: int
) -> str:
    text = "".join(lines)
    if not lines:
        if total == 0:
            return f"[{shown} is empty]"
        return f"[{shown} has {total} lines; nothing at line {start}]"
    last = start + len(lines) - 1
    if start == 1 and last == total and not cut:
        return text
    note = f"[{shown}: lines {start}-{last} of {total}"
    if cut:
        note += f"; output capped at {len(lines)} lines / {max_bytes} bytes"
    if last < total:
        note += f"; read on with start_line={last + 1}"
    return text + ("" if text.endswith("\n") else "\n") + note + "]"


def register(layer: ToolLayer) -> None:
    settings = layer.settings
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @layer.mcp.tool(annotations=read_only)
    async def list_files(
        project: ProjectId,
        path: Annotated[str, Field(description="Folder to list, relative.")] = ".",
        recursive: Annotated[bool, Field(description="Descend into sub-folders.")] = False,
        include_hidden: Annotated[bool, Field(description="Include dot-files.")] = False,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """List the files and folders of a project folder (tool folders like .git, .venv and
        node_modules are listed but not descended into)."""
        proj, _caller = await layer.open(ctx, project, write=False)
        start = resolve_in_workspace(proj.workspace, path)
        if not start.is_dir():
            msg = f"{path} is not a folder" if start.exists() else f"{path} does not exist"
            raise (InvalidInput if start.exists() else NotFound)(msg)
        return await asyncio.to_thread(
            _list, proj.workspace, start, recursive, include_hidden, settings.list_max_entries
        )

    @layer.mcp.tool(annotations=read_only)
    async def read_file(
        project: ProjectId,
        path: RelPath,
        start_line: Annotated[int, Field(ge=1, description="First line (1-based).")] = 1,
        end_line: Annotated[
            int | None, Field(ge=1, description="Last line, inclusive; default: to the end.")
        ] = None,
        ctx: Context | None = None,
    ) -> str | list[TextContent | ImageContent]:
        """Read a text file (or a line range of it; lines are 1-based). Output is capped at
        2,000 lines or 256 KiB, and a line longer than 16 KiB is cut; a note says how to read
        on. Images come back as images; other binary files are described, not dumped."""
        proj, caller = await layer.open(ctx, project, write=False)
        if end_line is not None and end_line < start_line:
            msg = "end_line must not be before start_line"
            raise InvalidInput(msg)
        writer = layer.writer(proj, caller)
        target = writer.resolve(path)
        shown = writer.relative(target)
        if target.is_dir():
            msg = f"{shown} is a folder; use list_files"
            raise InvalidInput(msg)
        live = layer.live is not None and await layer.live.open_document(target, "file")
        if live:
            # Open in a collaboration room: what the editors see is the truth.
            text = await writer.read_text(path)
            all_lines = text.splitlines(keepends=True)
            chosen = all_lines[start_line - 1 : end_line]
            lines: list[str] = []
            size, cut = 0, False
            for number, line in enumerate(chosen, start=start_line):
                if len(line) > DEFAULT_MAX_LINE_BYTES:
                    line = cut_line(
                        line[:DEFAULT_MAX_LINE_BYTES], number, len(line), DEFAULT_MAX_LINE_BYTES
                    )
                if len(lines) >= settings.read_max_lines or size + len(line) > (
                    settings.read_max_bytes
                ):
                    cut = True
                    break
                lines.append(line)
                size += len(line)
            return _render_read(
                shown, lines, start_line, len(all_lines), cut, settings.read_max_bytes
            )
        try:
            with target.open("rb") as fh:
                sample = fh.read(BINARY_SNIFF_BYTES)
            size = target.stat().st_size
        except FileNotFoundError:
            msg = f"{shown} does not exist"
            raise NotFound(msg) from None
        if looks_binary(sample):
            mime = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            note = f"[{shown} is a binary file: {size} bytes, {mime}]"
            if mime in IMAGE_TYPES and size <= MAX_IMAGE_BYTES:
                data = await asyncio.to_thread(target.read_bytes)
                image = ImageContent(
                    type="image", data=base64.b64encode(data).decode(), mime_type=mime
                )
                return [TextContent(type="text", text=note), image]
            return note
        # Streamed in chunks: a 400 MB file with no line break costs the caps, not 400 MB.
        window = await asyncio.to_thread(
            read_line_window,
            target,
            start_line,
            end_line,
            max_bytes=settings.read_max_bytes,
            max_lines=settings.read_max_lines,
        )
        return _render_read(
            shown, window.lines, start_line, window.total, window.cut, settings.read_max_bytes
        )

    @layer.mcp.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
    async def write_file(
        project: ProjectId,
        path: RelPath,
        content: Annotated[str, Field(description="The whole new content of the file.")],
        allow_empty: Annotated[
            bool, Field(description="Allow replacing a non-empty file with empty content.")
        ] = False,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Create or overwrite a text file (folders are created). Returns a diff summary."""
        proj, caller = await layer.open(ctx, project, write=True)
        change = await layer.writer(proj, caller).write_text(path, content, allow_empty=allow_empty)
        await layer.audit(caller, proj, "write_file", {"path": change.path})
        return change_result(change)

    @layer.mcp.tool(annotations=ToolAnnotations(destructive_hint=True))
    async def edit_file(
        project: ProjectId,
        path: RelPath,
        old_text: Annotated[str, Field(description="Exact text to replace (with context).")],
        new_text: Annotated[str, Field(description="The replacement text.")],
        replace_all: Annotated[
            bool, Field(description="Replace every occurrence instead of exactly one.")
        ] = False,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Replace exact text in a file. old_text must occur exactly once unless replace_all;
        include enough surrounding lines to make it unique. Returns the diff."""
        proj, caller = await layer.open(ctx, project, write=True)
        if old_text == "":
            msg = "old_text is empty; use write_file to create or overwrite a file"
            raise InvalidInput(msg)
        if old_text == new_text:
            msg = "old_text and new_text are the same"
            raise InvalidInput(msg)
        count = 0

        def replace(current: str | None) -> str:
            nonlocal count
            if current is None:
                msg = f"{path} does not exist"
                raise NotFound(msg)
            count = current.count(old_text)
            if count == 0:
                msg = f"old_text was not found in {path}; read the file and copy the text exactly"
                raise InvalidInput(msg)
            if count > 1 and not replace_all:
                msg = (
                    f"old_text occurs {count} times in {path}; add surrounding lines to make "
                    "it unique, or set replace_all"
                )
                raise Conflict(msg)
            return current.replace(old_text, new_text)

        change = await layer.writer(proj, caller).edit_text(path, replace, allow_empty=True)
        await layer.audit(caller, proj, "edit_file", {"path": change.path})
        return {**change_result(change), "replacements": count}

    @layer.mcp.tool(annotations=ToolAnnotations(destructive_hint=True))
    async def delete_file(
        project: ProjectId, path: RelPath, ctx: Context | None = None
    ) -> dict[str, Any]:
        """Delete a file (not a folder). A symlink is removed, never its target."""
        proj, caller = await layer.open(ctx, project, write=True)
        change = await layer.writer(proj, caller).delete(path)
        await layer.audit(caller, proj, "delete_file", {"path": change.path})
        return change_result(change)

    @layer.mcp.resource(
        FILE_RESOURCE_TEMPLATE,
        name="project_file",
        description="A file of a project workspace (text, or bytes for binary files).",
    )
    async def project_file(project: str, path: str, ctx: Context | None = None) -> str | bytes:
        try:
            proj, _caller = await layer.open(ctx, project, write=False)
            target = resolve_in_workspace(proj.workspace, path)
            if not target.is_file():
                msg = f"{path} is not a file"
                raise NotFound(msg)
            data = await asyncio.to_thread(read_capped, target, MAX_RESOURCE_BYTES, path)
            if data is None:
                msg = f"{path} is not a file"
                raise NotFound(msg)
        except EcodeError as exc:
            msg = f"{exc.code}: {exc.message}"
            raise ResourceError(msg) from exc
        return data if looks_binary(data[:BINARY_SNIFF_BYTES]) else data.decode("utf-8", "replace")

    @layer.mcp.tool(annotations=read_only)
    async def search_files(
        project: ProjectId,
        pattern: Annotated[
            str,
            Field(
                description="Regular expression in RE2 syntax (Python's, without "
                "backreferences or look-around); matched line by line."
            ),
        ],
        path: Annotated[str, Field(description="Folder or file to search in.")] = ".",
        glob: Annotated[
            str | None, Field(description="Only files matching this glob, e.g. '*.py'.")
        ] = None,
        literal: Annotated[bool, Field(description="Treat pattern as plain text.")] = False,
        ignore_case: Annotated[bool, Field(description="Match regardless of case.")] = False,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Search file contents line by line; returns path, line number and text of matches
        (capped). Binary and very large files are skipped."""
        proj, _caller = await layer.open(ctx, project, write=False)
        start = resolve_in_workspace(proj.workspace, path)
        if not start.exists():
            msg = f"{path} does not exist"
            raise NotFound(msg)
        # Compiling is bounded too (RE2's max_mem), but it is CPU work: not on the event loop.
        regex = await asyncio.to_thread(
            compile_pattern, pattern, literal=literal, ignore_case=ignore_case
        )
        budget = SearchBudget(
            max_results=settings.search_max_results,
            max_file_bytes=settings.search_max_file_bytes,
            deadline_s=SEARCH_DEADLINE_S,
        )
        # The walk runs in a thread (RE2 releases the GIL while it matches); a cancelled call
        # tells it to stop instead of leaving it to run out its deadline.
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(
                search_workspace, proj.workspace, start, regex, glob, budget, cancelled
            )
        finally:
            cancelled.set()
