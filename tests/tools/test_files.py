"""File tools over MCP (streamable HTTP, the SDK client) against a real Jupyter server."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

from mcp_types import ImageContent

from .conftest import McpConnect, error_of, text_of

EXPECTED_TOOLS = {
    "list_files",
    "read_file",
    "write_file",
    "edit_file",
    "delete_file",
    "search_files",
    "run_command",
    "install_packages",
    "execute_code",
    "read_notebook",
    "edit_notebook_cell",
    "query_database",
    "start_preview",
    "preview_status",
    "check_app",
    "list_projects",
    "resolve_project",
}
# The tools that find a project instead of taking one (for outside MCP clients).
DIRECTORY_TOOLS = {"list_projects", "resolve_project"}


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixel = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixel) + chunk(b"IEND", b"")
    )


async def test_list_tools_names_and_schemas(mcp_connect: McpConnect) -> None:
    async with mcp_connect() as client:
        tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == EXPECTED_TOOLS
    for tool in (t for t in tools if t.name not in DIRECTORY_TOOLS):
        # Every tool names its project first, and says what it does.
        assert next(iter(tool.input_schema["properties"])) == "project", tool.name
        assert "project" in tool.input_schema["required"]
        assert tool.description
    read_only = {t.name for t in tools if t.annotations and t.annotations.read_only_hint}
    assert read_only == {
        "list_files",
        "read_file",
        "search_files",
        "read_notebook",
        "preview_status",
        "list_projects",
        "resolve_project",
    }


async def test_write_read_edit_delete(mcp_connect: McpConnect, make_project: Any) -> None:
    pid, ws = await make_project()
    async with mcp_connect() as client:
        wrote = await client.call_tool(
            "write_file", {"project": pid, "path": "src/app.py", "content": "a = 1\nb = 2\n"}
        )
        assert not wrote.is_error
        assert wrote.structured_content is not None
        assert wrote.structured_content["action"] == "created"
        assert (ws / "src" / "app.py").read_text() == "a = 1\nb = 2\n"

        read = await client.call_tool("read_file", {"project": pid, "path": "src/app.py"})
        assert text_of(read) == "a = 1\nb = 2\n"

        edited = await client.call_tool(
            "edit_file",
            {"project": pid, "path": "src/app.py", "old_text": "b = 2", "new_text": "b = 3"},
        )
        assert edited.structured_content is not None
        assert edited.structured_content["replacements"] == 1
        assert "-b = 2\n+b = 3" in edited.structured_content["diff"]
        assert (ws / "src" / "app.py").read_text() == "a = 1\nb = 3\n"

        deleted = await client.call_tool("delete_file", {"project": pid, "path": "src/app.py"})
        assert deleted.structured_content is not None
        assert deleted.structured_content["action"] == "deleted"
        assert not (ws / "src" / "app.py").exists()


async def test_file_tools_bad_input(mcp_connect: McpConnect, make_project: Any) -> None:
    pid, ws = await make_project()
    (ws / "dup.txt").write_text("x\nx\n")
    async with mcp_connect() as client:
        call = client.call_tool
        assert "not_found" in error_of(await call("read_file", {"project": pid, "path": "nope"}))
        assert "invalid_input: " in error_of(await call("read_file", {"project": pid}))
        assert "end_line" in error_of(
            await call(
                "read_file", {"project": pid, "path": "dup.txt", "start_line": 5, "end_line": 2}
            )
        )
        assert "allow_empty" in error_of(
            await call("write_file", {"project": pid, "path": "dup.txt", "content": ""})
        )
        assert "occurs 2 times" in error_of(
            await call(
                "edit_file", {"project": pid, "path": "dup.txt", "old_text": "x", "new_text": "y"}
            )
        )
        assert "not found" in error_of(
            await call(
                "edit_file", {"project": pid, "path": "dup.txt", "old_text": "zzz", "new_text": "y"}
            )
        )
        assert "empty" in error_of(
            await call(
                "edit_file", {"project": pid, "path": "dup.txt", "old_text": "", "new_text": "y"}
            )
        )
        assert "workspace itself" in error_of(
            await call("delete_file", {"project": pid, "path": "."})
        )
        (ws / "folder").mkdir()
        assert "is a directory" in error_of(
            await call("delete_file", {"project": pid, "path": "folder"})
        )
        assert "invalid regular expression" in error_of(
            await call("search_files", {"project": pid, "pattern": "("})
        )
        assert "not a folder" in error_of(
            await call("list_files", {"project": pid, "path": "dup.txt"})
        )
        assert "not_found" in error_of(await call("list_files", {"project": "no-such-project"}))
        # replace_all resolves the ambiguity.
        ok = await call(
            "edit_file",
            {
                "project": pid,
                "path": "dup.txt",
                "old_text": "x",
                "new_text": "y",
                "replace_all": True,
            },
        )
        assert ok.structured_content is not None and ok.structured_content["replacements"] == 2
    assert (ws / "dup.txt").read_text() == "y\ny\n"


async def test_read_ranges_caps_and_binary(mcp_connect: McpConnect, make_project: Any) -> None:
    pid, ws = await make_project()
    (ws / "long.txt").write_text("".join(f"line {i}\n" for i in range(1, 5001)))
    (ws / "blob.bin").write_bytes(b"\x00\x01\x02binary" * 100)
    (ws / "pic.png").write_bytes(tiny_png())
    async with mcp_connect() as client:
        part = text_of(
            await client.call_tool(
                "read_file", {"project": pid, "path": "long.txt", "start_line": 10, "end_line": 12}
            )
        )
        assert part.startswith("line 10\nline 11\nline 12\n")
        assert "lines 10-12 of 5000" in part and "start_line=13" in part
        capped = text_of(await client.call_tool("read_file", {"project": pid, "path": "long.txt"}))
        assert "line 2000\n" in capped and "line 2001\n" not in capped
        assert "output capped" in capped
        binary = text_of(await client.call_tool("read_file", {"project": pid, "path": "blob.bin"}))
        assert "binary file" in binary and "\x00" not in binary
        image = await client.call_tool("read_file", {"project": pid, "path": "pic.png"})
        images = [b for b in image.content if isinstance(b, ImageContent)]
        assert len(images) == 1 and base64.b64decode(images[0].data) == tiny_png()
        assert "base64" not in text_of(image) and "iVBOR" not in text_of(image)


async def test_list_and_search(mcp_connect: McpConnect, make_project: Any) -> None:
    pid, ws = await make_project()
    (ws / "pkg").mkdir()
    (ws / "pkg" / "core.py").write_text("def answer():\n    return 42\n")
    (ws / "pkg" / "notes.md").write_text("The answer is in core.\n")
    (ws / ".venv" / "lib").mkdir(parents=True)
    (ws / ".venv" / "lib" / "junk.py").write_text("def answer(): pass\n")
    (ws / "node_modules" / "x").mkdir(parents=True)
    (ws / "node_modules" / "x" / "index.js").write_text("answer\n")
    async with mcp_connect() as client:
        listing = await client.call_tool("list_files", {"project": pid, "recursive": True})
        assert listing.structured_content is not None
        paths = {e["path"] for e in listing.structured_content["entries"]}
        assert {"pkg", "pkg/core.py", "pkg/notes.md", "node_modules"} <= paths
        assert not any(p.startswith("node_modules/") for p in paths)
        assert ".venv" not in paths  # hidden unless asked
        hidden = await client.call_tool("list_files", {"project": pid, "include_hidden": True})
        assert hidden.structured_content is not None
        assert ".venv" in {e["path"] for e in hidden.structured_content["entries"]}

        found = await client.call_tool("search_files", {"project": pid, "pattern": r"def \w+"})
        assert found.structured_content is not None
        matches = found.structured_content["matches"]
        assert matches == [{"path": "pkg/core.py", "line": 1, "text": "def answer():"}]
        md = await client.call_tool(
            "search_files",
            {"project": pid, "pattern": "ANSWER", "ignore_case": True, "glob": "*.md"},
        )
        assert md.structured_content is not None
        assert [m["path"] for m in md.structured_content["matches"]] == ["pkg/notes.md"]
        literal = await client.call_tool(
            "search_files", {"project": pid, "pattern": "answer()", "literal": True}
        )
        assert literal.structured_content is not None
        assert [m["line"] for m in literal.structured_content["matches"]] == [1]
