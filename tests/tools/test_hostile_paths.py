"""Every file tool, over MCP, against the hostile path corpus: all refused, nothing leaks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from workspace.hostile import hostile_paths, plant_sandbox

from ecode_jupyter.exceptions import PathOutsideWorkspace
from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.tools.server import ToolLayer

from .conftest import McpConnect, error_of

LEAK_MARKERS = ("outside secret", "sibling secret", "parent secret", "root:x:0:0")


def calls_for(pid: str, rel: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("list_files", {"project": pid, "path": rel}),
        ("read_file", {"project": pid, "path": rel}),
        ("write_file", {"project": pid, "path": rel, "content": "pwned\n"}),
        ("edit_file", {"project": pid, "path": rel, "old_text": "secret", "new_text": "pwned"}),
        ("delete_file", {"project": pid, "path": rel}),
        ("search_files", {"project": pid, "pattern": "secret", "path": rel}),
        ("read_notebook", {"project": pid, "path": rel}),
        (
            "edit_notebook_cell",
            {"project": pid, "path": rel, "index": 0, "action": "insert", "source": "pwned"},
        ),
        ("run_command", {"project": pid, "command": "cat secret.txt", "cwd": rel}),
    ]


def _check_refused(message: str, tool: str, rel: str) -> None:
    assert message.startswith("path_outside_workspace:"), (tool, rel, message)
    assert not any(marker in message for marker in LEAK_MARKERS), (tool, rel)


async def test_hostile_paths_are_refused_by_every_file_tool(
    mcp_connect: McpConnect, make_project: Any, tool_layer: ToolLayer, tmp_path: Path
) -> None:
    """The whole corpus against every tool through ToolLayer.call (the path MCP calls take,
    minus the transport), and over MCP for read_file and write_file plus one path per tool."""
    pid, ws = await make_project()
    box = plant_sandbox(ws, tmp_path / "outside")
    (box.tmp / "secret.txt").write_text("parent secret\n")
    before = box.snapshot()
    corpus = hostile_paths(box)
    assert len(corpus) >= 30
    alice = EcodeUser("alice", "Alice", False)
    refused = 0
    for rel in corpus:
        for tool, args in calls_for(pid, rel):
            with pytest.raises(PathOutsideWorkspace) as info:
                await tool_layer.call(tool, args, alice)
            _check_refused(f"{info.value.code}: {info.value.message}", tool, rel)
            refused += 1
    assert refused == len(corpus) * 9
    async with mcp_connect() as client:
        over_mcp = [
            (tool, args, rel)
            for rel in corpus
            for tool, args in calls_for(pid, rel)
            if tool in ("read_file", "write_file")
        ]
        over_mcp += [(tool, args, corpus[3]) for tool, args in calls_for(pid, corpus[3])]
        for tool, args, rel in over_mcp:
            _check_refused(error_of(await client.call_tool(tool, args)), tool, rel)
        # The corpus did not disturb ordinary work in the same workspace.
        ok = await client.call_tool("read_file", {"project": pid, "path": "inside.txt"})
        assert not ok.is_error
    assert box.snapshot() == before
    assert not (box.outside / "not-there-yet.txt").exists()
    assert not (box.outside / "new_file.txt").exists()
    assert (ws / "inside.txt").read_text() == "inside\n"
