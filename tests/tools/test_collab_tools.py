"""A tool call over MCP edits a file a person has open: the change is live, their edit stays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jupyter_ydoc import YUnicode
from pycrdt import Text
from workspace.collab_support import Connect, collab_client, ecode_extra_config, eventually

from .conftest import McpConnect

__all__ = ["collab_client", "ecode_extra_config"]  # fixtures used below


@pytest.fixture
def ecode_workspace_root(jp_root_dir: Path) -> Path:
    # Under the server root, so the contents manager (and collaboration rooms) can open them.
    root = jp_root_dir / "ecode-projects"
    root.mkdir()
    return root


async def test_edit_file_over_mcp_reaches_an_open_editor(
    mcp_connect: McpConnect, make_project: Any, collab_client: Connect
) -> None:
    pid, ws = await make_project()
    (ws / "app.py").write_text("def hello():\n    return 'hello'\n\n# notes\n")
    person = YUnicode()
    async with collab_client("text", "file", f"ecode-projects/{pid}/app.py", person):
        text = person.ydoc.get("source", type=Text)
        # The person types a note at the end, concurrently with the tool's edit.
        text.insert(len(str(text).encode()), "# typed by a person\n")
        async with mcp_connect() as client:
            result = await client.call_tool(
                "edit_file",
                {
                    "project": pid,
                    "path": "app.py",
                    "old_text": "return 'hello'",
                    "new_text": "return 'hello, world'",
                },
            )
            assert result.structured_content is not None and result.structured_content["live"]
            expected = "def hello():\n    return 'hello, world'\n\n# notes\n# typed by a person\n"
            await eventually(lambda: person.get() == expected, "the editor shows both edits")
            read = await client.call_tool("read_file", {"project": pid, "path": "app.py"})
            assert read.content[0].text == expected  # type: ignore[union-attr]
        # Saved right away: a command run now sees the tool's change on disk.
        assert "hello, world" in (ws / "app.py").read_text()
