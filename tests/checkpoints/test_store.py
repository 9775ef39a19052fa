"""What a checkpoint holds, and retention: old checkpoints and the files only they held go."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ecode_jupyter.checkpoints.store import CheckpointStore


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    for rel, text in {
        "app.py": "print(1)\n",
        "analysis.ipynb": '{"cells": [], "nbformat": 4}\n',
        "requirements.txt": "flask\n",
        ".ecode/rules.md": "be nice\n",
        ".ecode/outputs/shot.txt": "a screenshot\n",
        ".ecode/home/.bashrc": "sandbox home\n",
        ".venv/lib/site.py": "x\n",
        "node_modules/left-pad/index.js": "x\n",
        "__pycache__/app.cpython-312.pyc": "x\n",
        "pkg/__pycache__/m.pyc": "x\n",
    }.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(text)
    db = sqlite3.connect(ws / ".ecode" / "database.sqlite3")
    with db:
        db.execute("create table todo (title text)")
        db.execute("insert into todo values ('milk')")
    db.close()
    (ws / "link.py").symlink_to("/etc/passwd")
    return ws


def test_a_checkpoint_holds_the_projects_files_and_database_only(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    store = CheckpointStore(tmp_path / "store")
    record = store.record(store.capture(ws), kind="start", previous=None)
    assert record is not None
    files = store.manifest(record)
    assert sorted(files) == [
        ".ecode/database.sqlite3",
        ".ecode/rules.md",
        "analysis.ipynb",
        "app.py",
        "requirements.txt",
    ]
    # The database is a consistent SQLite copy with its rows.
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes(store.content(files[".ecode/database.sqlite3"]) or b"")
    assert sqlite3.connect(copy).execute("select title from todo").fetchall() == [("milk",)]


def test_retention_drops_old_checkpoints_and_their_files(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    store = CheckpointStore(tmp_path / "store")
    previous = None
    for i in range(6):
        (ws / "app.py").write_text(f"print({i})  # version {i}\n")
        previous = store.record(store.capture(ws), kind="step", previous=previous)
    assert [r.number for r in store.list()] == [1, 2, 3, 4, 5, 6]
    blobs_before = store.blobs.blob_count()

    assert store.prune(keep=2) == 4

    assert [r.number for r in store.list()] == [5, 6]
    # Four app.py versions and four manifests only the dropped checkpoints held are gone.
    assert store.blobs.blob_count() == blobs_before - 8
    kept = store.manifest(store.get(5))
    assert store.content(kept["app.py"]) == b"print(4)  # version 4\n"
