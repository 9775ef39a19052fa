"""The agent's path: ToolLayer.call runs the same tools in-process, raising errors."""

from __future__ import annotations

from typing import Any

import pytest

from ecode_jupyter.exceptions import Forbidden, InvalidInput, NotFound, PathOutsideWorkspace
from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.tools.server import ToolLayer
from ecode_jupyter.workspace.writer import FileChange

ALICE = EcodeUser("alice", "Alice", False)
BOB = EcodeUser("bob", "Bob", False)


class Reporter:
    """Collects what the tools report, as the agent's event emitter would."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.chunks: list[str] = []
        self.changes: list[FileChange] = []

    async def progress(self, message: str) -> None:
        self.messages.append(message)

    async def output(self, chunk: str) -> None:
        self.chunks.append(chunk)

    async def file_changed(self, change: FileChange) -> None:
        self.changes.append(change)


async def test_call_reports_and_raises(
    tool_layer: ToolLayer, make_project: Any, ecode_api: Any
) -> None:
    pid, ws = await make_project()
    seen: list[tuple[str, str]] = []
    tool_layer.add_change_listener(lambda project, change: seen.append((project, change.path)))
    reporter = Reporter()
    result = await tool_layer.call(
        "write_file",
        {"project": pid, "path": "main.py", "content": "print('ok')\n"},
        ALICE,
        reporter,
    )
    assert result.structured_content is not None
    assert result.structured_content["action"] == "created"
    assert [c.event_data()["action"] for c in reporter.changes] == ["created"]
    assert seen == [(pid, "main.py")]

    ran = await tool_layer.call(
        "run_command", {"project": pid, "command": "python main.py"}, ALICE, reporter
    )
    assert ran.structured_content is not None and ran.structured_content["output"] == "ok\n"
    assert "".join(reporter.chunks) == "ok\n"

    with pytest.raises(PathOutsideWorkspace):
        await tool_layer.call("read_file", {"project": pid, "path": "../../etc/passwd"}, ALICE)
    with pytest.raises(InvalidInput, match="read_file: path: Field required"):
        await tool_layer.call("read_file", {"project": pid}, ALICE)
    with pytest.raises(NotFound):
        await tool_layer.call("list_files", {"project": pid}, BOB)
    await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "viewer"})
    listed = await tool_layer.call("list_files", {"project": pid}, BOB)
    assert listed.structured_content is not None
    with pytest.raises(Forbidden):
        await tool_layer.call("delete_file", {"project": pid, "path": "main.py"}, BOB)
    assert (ws / "main.py").exists()


async def test_tool_writes_are_audited(
    tool_layer: ToolLayer, make_project: Any, ecode_api: Any
) -> None:
    pid, _ws = await make_project()
    await tool_layer.call("write_file", {"project": pid, "path": "a.txt", "content": "a\n"}, ALICE)
    await tool_layer.call("read_file", {"project": pid, "path": "a.txt"}, ALICE)
    audit = await ecode_api("GET", f"audit?project={pid}", user="admin")
    assert audit.status == 200, audit.body
    actions = [e["action"] for e in audit.body["events"]]
    assert "tool.write_file" in actions and "tool.read_file" not in actions
    entry = next(e for e in audit.body["events"] if e["action"] == "tool.write_file")
    assert entry["actor"] == "alice" and entry["details"] == {"path": "a.txt"}
