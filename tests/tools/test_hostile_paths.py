"""Every file tool, over MCP, against the hostile path corpus: all refused, nothing leaks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workspace.hostile import hostile_paths, plant_sandbox

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


async def test_hostile_paths_are_refused_by_every_file_tool(
    mcp_connect: McpConnect, make_project: Any, tmp_path: Path
) -> None:
    pid, ws = await make_project()
    box = plant_sandbox(ws, tmp_path / "outside")
    (box.tmp / "secret.txt").write_text("parent secret\n")
    before = box.snapshot()
    corpus = hostile_paths(box)
    assert len(corpus) >= 30
    refused = 0
    async with mcp_connect() as client:
        for rel in corpus:
            for tool, args in calls_for(pid, rel):
                result = await client.call_tool(tool, args)
                message = error_of(result)
                assert message.startswith("path_outside_workspace:"), (tool, rel, message)
                assert not any(marker in message for marker in LEAK_MARKERS), (tool, rel)
                refused += 1
        # The corpus did not disturb ordinary work in the same workspace.
        ok = await client.call_tool("read_file", {"project": pid, "path": "inside.txt"})
        assert not ok.is_error
    assert refused == len(corpus) * 9
    assert box.snapshot() == before
    assert not (box.outside / "not-there-yet.txt").exists()
    assert not (box.outside / "new_file.txt").exists()
    assert (ws / "inside.txt").read_text() == "inside\n"
