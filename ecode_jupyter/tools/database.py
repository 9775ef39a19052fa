"""query_database: SQL on the project's own database, read-only unless asked to write.

Each project has a SQLite file in its workspace (``.ecode/database.sqlite3``); its URL is
given to the project's commands and kernel as ``DATABASE_URL``, so the app the agent builds
and this tool see the same data. Read queries open the file read-only; no query may attach
another database file (which would reach outside the workspace). On suites running on
PostgreSQL a schema per project is the planned next step; today it is SQLite for everyone.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations
from pydantic import Field

from ecode_jupyter.exceptions import InvalidInput, NotFound, PathOutsideWorkspace
from ecode_jupyter.tools.context import PROJECT_DATABASE
from ecode_jupyter.workspace.paths import resolve_in_workspace

if TYPE_CHECKING:
    from ecode_jupyter.tools.server import ToolLayer

log = logging.getLogger(__name__)

ProjectId = Annotated[str, Field(description="The project id.")]
CELL_CHARS = 1000
_DENIED = {sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH}


def _authorizer(action: int, *_args: Any) -> int:
    # ATTACH (and VACUUM INTO, which SQLite authorizes as an attach) could read or write any
    # file on the machine; everything else stays inside the project's own database.
    return sqlite3.SQLITE_DENY if action in _DENIED else sqlite3.SQLITE_OK


def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, str) and len(value) > CELL_CHARS:
        return value[:CELL_CHARS] + "…"
    return value


def database_path(workspace: Path) -> Path:
    """The project's database file, through the one path resolver; a symlink is refused.

    An editor can plant ``.ecode/database.sqlite3 -> /path/to/the/server's/database``; a
    viewer's read-only query would then read it. A link that stays inside the workspace is
    refused too: the database is a plain file, and SQLite opens the path again later.
    """
    path = resolve_in_workspace(workspace, PROJECT_DATABASE)
    lexical = workspace / PROJECT_DATABASE
    if path != lexical or lexical.is_symlink() or lexical.parent.is_symlink():
        msg = f"{PROJECT_DATABASE} is a symlink; the project's database must be a plain file"
        raise PathOutsideWorkspace(msg, path=PROJECT_DATABASE)
    return path


def run_query(
    path: Path,
    sql: str,
    params: list[Any] | dict[str, Any],
    *,
    write: bool,
    max_rows: int,
    timeout_s: float,
) -> dict[str, Any]:
    """Run one statement; blocking (call it in a thread)."""
    mode = "rwc" if write else "ro"
    uri = f"file:{urllib.parse.quote(str(path))}?mode={mode}"
    conn = sqlite3.connect(uri, uri=True, timeout=min(timeout_s, 10.0))
    deadline = time.monotonic() + timeout_s
    try:
        conn.set_authorizer(_authorizer)
        # Abort a runaway query: SQLite calls this every 10k VM steps.
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        cursor = conn.execute(sql, params)
        if cursor.description is None:
            conn.commit()
            return {"rows_affected": cursor.rowcount, "columns": [], "rows": []}
        rows = cursor.fetchmany(max_rows + 1)
        columns = [d[0] for d in cursor.description]
        if write:
            conn.commit()
        return {
            "columns": columns,
            "rows": [[_cell(v) for v in row] for row in rows[:max_rows]],
            "row_count": min(len(rows), max_rows),
            "truncated": len(rows) > max_rows,
        }
    except sqlite3.Warning as exc:  # "You can only execute one statement at a time."
        msg = f"SQL error: {exc}"
        raise InvalidInput(msg) from None
    except sqlite3.Error as exc:
        reason = str(exc)
        if reason == "interrupted":
            reason = f"the query ran longer than {timeout_s:g}s and was stopped"
        elif "readonly" in reason:
            reason += " (pass write=true to change data)"
        msg = f"SQL error: {reason}"
        raise InvalidInput(msg) from None
    finally:
        conn.close()


def register(layer: ToolLayer) -> None:
    settings = layer.settings

    @layer.mcp.tool(annotations=ToolAnnotations(destructive_hint=True, open_world_hint=False))
    async def query_database(
        project: ProjectId,
        sql: Annotated[str, Field(description="One SQL statement (SQLite dialect).")],
        params: Annotated[
            list[Any] | dict[str, Any] | None,
            Field(description="Parameters for ? or :name placeholders."),
        ] = None,
        write: Annotated[
            bool, Field(description="Allow changes (INSERT, CREATE, ...). Default read-only.")
        ] = False,
        max_rows: Annotated[
            int | None, Field(ge=1, le=10_000, description="Rows returned at most (default 200).")
        ] = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Query the project's own SQLite database (the one at $DATABASE_URL). Read-only
        unless write is true; results are capped."""
        proj, caller = await layer.open(ctx, project, write=write)
        path = database_path(proj.workspace)
        if not write and not path.exists():
            msg = "the project has no database yet; create tables with write=true"
            raise NotFound(msg)
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            await layer.audit(caller, proj, "query_database", {"sql": sql[:200]})
        return await asyncio.to_thread(
            run_query,
            path,
            sql,
            params or [],
            write=write,
            max_rows=min(max_rows or settings.query_max_rows, 10_000),
            timeout_s=settings.query_timeout_s,
        )
