"""query_database reads only the project's own database file; the file tools do not write in
``.git`` or ``.ecode`` (issue 17, 6)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from .conftest import McpConnect, error_of


def _database_with_a_row(path: Path, row: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", (row,))
    conn.close()


async def test_a_symlinked_database_is_refused(
    mcp_connect: McpConnect, make_project: Any, ecode_api: Any, tmp_path: Path
) -> None:
    pid, ws = await make_project()
    shared = await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "viewer"})
    assert shared.status in (200, 201), shared.body
    # The server's database stands in for any file outside the workspace.
    outside = tmp_path / "server.sqlite3"
    _database_with_a_row(outside, "the server's row")
    (ws / ".ecode").mkdir(exist_ok=True)
    link = ws / ".ecode" / "database.sqlite3"
    link.symlink_to(outside)
    query = {"project": pid, "sql": "SELECT v FROM t"}
    async with mcp_connect("bob") as bob:
        refused = error_of(await bob.call_tool("query_database", query))
    assert "path_outside_workspace" in refused and "server's row" not in refused
    # A link to a file inside the workspace is refused as well: the database is a plain file.
    link.unlink()
    _database_with_a_row(ws / "copy.sqlite3", "a copy")
    link.symlink_to(ws / "copy.sqlite3")
    async with mcp_connect() as alice:
        assert "is a symlink" in error_of(await alice.call_tool("query_database", query))
        link.unlink()
        (ws / "copy.sqlite3").rename(link)
        ok = await alice.call_tool("query_database", query)
    assert ok.structured_content is not None and ok.structured_content["rows"] == [["a copy"]]


async def test_file_tools_do_not_write_in_git_or_ecode(
    mcp_connect: McpConnect, make_project: Any
) -> None:
    pid, ws = await make_project()
    (ws / ".git" / "hooks").mkdir(parents=True)
    (ws / ".git" / "config").write_text("[core]\n")
    (ws / "hooks").symlink_to(ws / ".git" / "hooks")
    async with mcp_connect() as client:
        for tool, args in [
            ("write_file", {"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\nid\n"}),
            ("write_file", {"path": "hooks/post-checkout", "content": "#!/bin/sh\nid\n"}),
            ("edit_file", {"path": ".git/config", "old_text": "[core]", "new_text": "[x]"}),
            ("delete_file", {"path": ".git/config"}),
            ("write_file", {"path": ".ecode/database.sqlite3", "content": "x"}),
        ]:
            message = error_of(await client.call_tool(tool, {"project": pid, **args}))
            assert "path_outside_workspace" in message and "do not write in" in message
        # Reading stays allowed, and .venv (the project's own environment) is writable.
        read = await client.call_tool("read_file", {"project": pid, "path": ".git/config"})
        assert not read.is_error
        venv = await client.call_tool(
            "write_file", {"project": pid, "path": ".venv/pyvenv.cfg", "content": "home = x\n"}
        )
        assert not venv.is_error
    assert not (ws / ".git" / "hooks" / "pre-commit").exists()
    assert not (ws / ".git" / "hooks" / "post-checkout").exists()
    assert (ws / ".git" / "config").read_text() == "[core]\n"
