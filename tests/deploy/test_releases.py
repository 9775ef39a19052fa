from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ecode_jupyter.deploy.releases import BlobStore, SnapshotLimits
from ecode_jupyter.exceptions import InvalidInput


def _workspace(root: Path) -> Path:
    files = {
        "app.py": "print('hi')\n",
        "lib/util.py": "X = 1\n",
        "static/logo.svg": "<svg/>",
        ".venv/bin/python": "not part of a release",
        "node_modules/x/index.js": "nor this",
        "__pycache__/app.cpython-311.pyc": "nor this",
        ".ecode/database.sqlite3": "nor the project's data",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(root / "run.sh", 0o755)
    return root


def test_snapshot_holds_the_source_files_once_each(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    workspace = _workspace(tmp_path / "ws")
    first = store.snapshot(workspace)
    assert sorted(first.files) == ["app.py", "lib/util.py", "run.sh", "static/logo.svg"]
    assert first.files["run.sh"].executable and not first.files["app.py"].executable
    blobs = store.blob_count()

    again = store.snapshot(workspace)
    assert again.digest == first.digest and again.new_blobs == 0
    assert store.blob_count() == blobs  # unchanged files are stored once

    (workspace / "app.py").write_text("print('changed')\n")
    changed = store.snapshot(workspace)
    assert changed.digest != first.digest
    assert changed.new_blobs == 2  # the changed file and the new manifest
    assert changed.files["lib/util.py"] == first.files["lib/util.py"]


def test_materialize_recreates_the_files_and_never_touches_the_store(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    snapshot = store.snapshot(_workspace(tmp_path / "ws"))
    out = tmp_path / "run"
    assert store.materialize(snapshot.digest, out) == 4
    assert (out / "lib/util.py").read_text() == "X = 1\n"
    assert os.access(out / "run.sh", os.X_OK)
    (out / "app.py").write_text("the app wrote here")
    again = tmp_path / "run2"
    store.materialize(snapshot.digest, again)
    assert (again / "app.py").read_text() == "print('hi')\n"


def test_links_are_left_out(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path / "ws")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (workspace / "link.txt").symlink_to(secret)
    snapshot = BlobStore(tmp_path / "store").snapshot(workspace)
    assert "link.txt" not in snapshot.files and snapshot.skipped == ("link.txt",)


def test_limits_refuse_a_project_too_big_to_release(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path / "ws")
    store = BlobStore(tmp_path / "store")
    with pytest.raises(InvalidInput, match="more than 2 files"):
        store.snapshot(workspace, SnapshotLimits(max_files=2))
    with pytest.raises(InvalidInput, match="larger than"):
        store.snapshot(workspace, SnapshotLimits(max_file_bytes=5))


def test_a_tampered_manifest_path_cannot_escape(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    blob, _ = store.put_bytes(b"data")
    manifest, _ = store.put_bytes(
        b'{"version":1,"files":{"../escape.txt":{"sha256":"%s","size":4,"exec":false}}}'
        % blob.encode()
    )
    with pytest.raises(Exception, match="outside"):
        store.materialize(manifest, tmp_path / "run")
    assert not (tmp_path / "escape.txt").exists()


def _age(store: BlobStore, seconds: float) -> None:
    """Make every stored blob look ``seconds`` old."""
    past = time.time() - seconds
    for path in store.blobs.glob("*/*"):
        os.utime(path, (past, past))


def test_collection_removes_only_what_no_release_uses(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    workspace = _workspace(tmp_path / "ws")
    kept = store.snapshot(workspace)
    (workspace / "app.py").write_text("print('only the purged release had this')\n")
    purged = store.snapshot(workspace)
    only_purged = {purged.digest, purged.files["app.py"].digest}
    _age(store, 7200)

    # Recently used blobs stay whatever: a snapshot in progress has no release row yet.
    assert store.collect([kept.digest], grace_s=10 * 3600) == 0
    # A manifest this store does not hold (another server's release) changes nothing.
    elsewhere = "f" * 64
    assert store.collect([kept.digest, elsewhere]) == len(only_purged)
    assert not any(store.has(d) for d in only_purged)
    # What the kept release needs is all there, the files it shared with the purged one too.
    out = tmp_path / "run"
    assert store.materialize(kept.digest, out) == 4
    assert (out / "app.py").read_text() == "print('hi')\n"
    assert store.collect([kept.digest]) == 0


def test_reusing_a_stored_blob_protects_it_from_collection(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    workspace = _workspace(tmp_path / "ws")
    first = store.snapshot(workspace)
    _age(store, 7200)
    # The release row of this first snapshot was removed (its project purged); a new
    # snapshot of the same files reuses every blob before its own row exists.
    again = store.snapshot(workspace)
    assert again.digest == first.digest
    assert store.collect([]) == 0  # reused just now: inside the grace period
    assert store.materialize(again.digest, tmp_path / "run") == 4


def test_collection_stops_when_a_release_manifest_is_unreadable(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    workspace = _workspace(tmp_path / "ws")
    snapshot = store.snapshot(workspace)
    bad, _ = store.put_bytes(b"not a manifest")
    _age(store, 7200)
    assert store.collect([snapshot.digest, bad]) == 0  # better a full disk than a lost file
    assert store.materialize(snapshot.digest, tmp_path / "run") == 4
