"""Undo while a person has a file open in a collaboration room: the revert reaches their
editor live, merged with what they typed (not yet saved to disk), and loses no keystroke."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jupyter_ydoc import YUnicode
from pycrdt import Text
from workspace.collab_support import Connect, collab_client, eventually

from .conftest import RunScript
from .test_undo import README_LINE, five_file_run

__all__ = ["collab_client"]  # a fixture used below


@pytest.fixture
def ecode_workspace_root(jp_root_dir: Path) -> Path:
    # Under the server root, so collaboration rooms can open the project's files.
    root = jp_root_dir / "ecode-projects"
    root.mkdir()
    return root


@pytest.fixture
def ecode_extra_config(tmp_path: Path, jp_root_dir: Path, checkpoints_dir: Path) -> dict[str, Any]:
    # As workspace/collab_support.py, with this package's checkpoints folder.
    return {
        "ServerApp": {
            "jpserver_extensions": {
                "ecode_jupyter": True,
                "jupyter_server_ydoc": True,
                "jupyter_server_fileid": True,
            }
        },
        "SQLiteYStore": {"db_path": str(tmp_path / "ystore.db")},
        "BaseFileIdManager": {
            "root_dir": str(jp_root_dir),
            "db_path": str(tmp_path / "fileid.db"),
            "db_journal_mode": "OFF",
        },
        # Long: what the person typed is only in the room when the undo comes.
        "YDocExtension": {"document_save_delay": 30, "document_cleanup_delay": 60},
        "EcodeApp": {"agent_offline_installs": False, "checkpoints_dir": str(checkpoints_dir)},
    }


async def test_undo_reaches_an_open_editor_and_keeps_what_the_person_typed(
    ecode_api: Any, ecode_workspace_root: Path, run_script: RunScript, collab_client: Connect
) -> None:
    created = await ecode_api("POST", "projects", body={"name": "w", "template": "python-script"})
    pid = created.body["id"]
    ws = ecode_workspace_root / pid
    original_main = (ws / "main.py").read_text()
    run = await run_script(pid, five_file_run())
    assert run["status"] == "completed", run
    person = YUnicode()
    async with collab_client("text", "file", f"ecode-projects/{pid}/README.md", person):
        text = person.ydoc.get("source", type=Text)
        assert "AGENT-EDITED" in str(text)
        # Typed in the editor; the room saves it to disk only after 30 s.
        text.insert(len(str(text).encode()), "typed by a person, unsaved\n")

        undone = await ecode_api("POST", f"runs/{run['id']}/undo")

        assert undone.status == 200, undone.body
        assert undone.body["merged"] == ["README.md"] and undone.body["conflicts"] == []
        await eventually(
            lambda: README_LINE in person.get() and "AGENT-EDITED" not in person.get(),
            "the person's editor shows the agent's edit reverted",
        )
        assert person.get().endswith("typed by a person, unsaved\n")
        # Written through the room, which saved it at once: the disk has both too.
        on_disk = (ws / "README.md").read_text()
        assert README_LINE in on_disk and on_disk.endswith("typed by a person, unsaved\n")
    assert (ws / "main.py").read_text() == original_main
    assert not (ws / "notes.md").exists()
