"""Checkpoints of a project's workspace: content-addressed, in the server's data folder.

A checkpoint is what the workspace held after one agent step: every file (notebooks included),
the project's own SQLite database (``.ecode/database.sqlite3``, copied with SQLite's backup
API so a half-written page never lands in it) and the recorded requirements (they are files:
``requirements.txt``, ``package.json``). Files are blobs of the release store's
:class:`~ecode_jupyter.deploy.releases.BlobStore`, one store per project under
``checkpoints_dir/<project id>/``, so a blob is stored once however many checkpoints hold it.

Each checkpoint is a small JSON record ``records/<number>.json`` naming its manifest blob
(path → hash, size, executable bit) plus who and what made it. No database table: the records
live beside the blobs, in a folder project code never sees (the sandbox shows a project its
workspace only), so code the model wrote cannot rewrite the history it would be reverted to.

Unchanged files cost a ``stat``: a cache of (size, mtime, inode, ctime) → hash, saved with
each checkpoint, skips reading a file whose metadata did not change (git's index does the
same). A file changed less than :data:`RACY_S` before the walk is hashed anyway, since a second
write within the file system's timestamp granularity would not show in its metadata.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import stat
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..deploy.releases import BlobStore, FileEntry, _manifest_bytes
from ..exceptions import NotFound

log = logging.getLogger(__name__)

# Folders never checkpointed, at any depth: environments and caches are rebuilt from the
# recorded requirements, and reverting them file by file would break them.
SKIPPED_DIRS = frozenset(
    {
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        ".git",
        ".ipynb_checkpoints",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
        ".jupyter",
        ".cache",
    }
)
SKIPPED_SUFFIXES = (
    ".pyc",
    ".pyo",
    ".ecode.tmp",
    ".sqlite3-wal",
    ".sqlite3-shm",
    ".sqlite3-journal",
)
# Of the server's ``.ecode`` folder only these are the project's (its database and rules);
# outputs, the sandbox's home and the rest are the server's or throwaway.
PROJECT_DATABASE = ".ecode/database.sqlite3"
ECODE_KEPT = frozenset({PROJECT_DATABASE, ".ecode/rules.md"})
RACY_S = 1.0
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_FILES = 20_000


@dataclass(frozen=True)
class CheckpointRecord:
    """One checkpoint as listed: its number, manifest and where it came from."""

    number: int
    manifest: str
    created_at: float
    # "start" (a run's first state), "pre" (before a step's tools, when people changed files
    # while the model thought), "step" (after its tools), "restore", "undo"
    kind: str
    run_id: str | None = None
    step: int | None = None
    files: int = 0
    bytes: int = 0
    new_bytes: int = 0  # bytes this checkpoint added to the store
    # Paths the agent's file tools reported changing in this step, and whether the step ran
    # something (a command, code) that may change any file: see CheckpointManager.undo_run.
    reported: tuple[str, ...] = ()
    ran_code: bool = False
    actor: str | None = None
    skipped: tuple[str, ...] = ()  # files too large (or too many) to keep

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.number,
            "manifest": self.manifest,
            "created_at": self.created_at,
            "kind": self.kind,
            "run_id": self.run_id,
            "step": self.step,
            "files": self.files,
            "bytes": self.bytes,
            "new_bytes": self.new_bytes,
            "reported": list(self.reported),
            "ran_code": self.ran_code,
            "actor": self.actor,
            "skipped": list(self.skipped),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckpointRecord:
        return cls(
            number=int(data["id"]),
            manifest=str(data["manifest"]),
            created_at=float(data["created_at"]),
            kind=str(data["kind"]),
            run_id=data.get("run_id"),
            step=data.get("step"),
            files=int(data.get("files", 0)),
            bytes=int(data.get("bytes", 0)),
            new_bytes=int(data.get("new_bytes", 0)),
            reported=tuple(data.get("reported") or ()),
            ran_code=bool(data.get("ran_code")),
            actor=data.get("actor"),
            skipped=tuple(data.get("skipped") or ()),
        )


@dataclass
class _Cached:
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    digest: str
    executable: bool


@dataclass
class Capture:
    files: dict[str, FileEntry] = field(default_factory=dict)
    new_bytes: int = 0
    skipped: list[str] = field(default_factory=list)


def walk_checkpoint_files(workspace: Path) -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative POSIX path, path, lstat) of every regular file a checkpoint holds.

    ``os.scandir`` with plain strings: on a 2,000-file project pathlib's objects were most of
    a checkpoint's time. Symbolic links are never followed or kept (a link could point out).
    """
    root = str(workspace.resolve())
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue  # removed (or closed to us) while we walked
        for entry in entries:
            name = entry.name
            rel = prefix + name
            if entry.is_dir(follow_symlinks=False):
                if name in SKIPPED_DIRS:
                    continue
                if rel == ".ecode":
                    # Of the server's folder only the project's own files (see ECODE_KEPT).
                    for kept in sorted(ECODE_KEPT):
                        path = os.path.join(root, kept)
                        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                            st = os.lstat(path)
                            if stat.S_ISREG(st.st_mode):
                                yield kept, path, st
                    continue
                stack.append((rel + "/", entry.path))
                continue
            if name.endswith(SKIPPED_SUFFIXES):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield rel, entry.path, st


class CheckpointStore:
    """The checkpoints of one project. Blocking: the manager calls it in a thread, one call
    at a time per project (it holds a lock)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = BlobStore(root)
        self.records = root / "records"
        self._cache_path = root / "statcache.json"
        self._cache: dict[str, _Cached] | None = None

    # -- taking one --------------------------------------------------------------------

    def _load_cache(self) -> dict[str, _Cached]:
        if self._cache is None:
            self._cache = {}
            with contextlib.suppress(FileNotFoundError, ValueError, TypeError, KeyError):
                raw = json.loads(self._cache_path.read_text())
                self._cache = {path: _Cached(*item) for path, item in raw.items()}
        return self._cache

    def _save_cache(self, cache: dict[str, _Cached]) -> None:
        body = {
            p: [c.size, c.mtime_ns, c.ctime_ns, c.ino, c.digest, c.executable]
            for p, c in cache.items()
        }
        data = json.dumps(body, separators=(",", ":")).encode()
        fd, name = tempfile.mkstemp(dir=self.root)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(name, self._cache_path)

    def capture(self, workspace: Path) -> Capture:
        """Store the workspace's current files; return the manifest's entries."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        cache = self._load_cache()
        fresh: dict[str, _Cached] = {}
        out = Capture()
        racy_after = time.time_ns() - int(RACY_S * 1e9)
        for rel, path, st in walk_checkpoint_files(workspace):
            if len(out.files) >= MAX_FILES or st.st_size > MAX_FILE_BYTES:
                out.skipped.append(rel)
                continue
            executable = bool(st.st_mode & stat.S_IXUSR)
            hit = cache.get(rel)
            if (
                hit is not None
                and (hit.size, hit.mtime_ns, hit.ctime_ns, hit.ino)
                == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
                and st.st_mtime_ns < racy_after
                and rel != PROJECT_DATABASE  # its -wal file changes without it: always copied
            ):
                out.files[rel] = FileEntry(hit.digest, hit.size, executable)
                fresh[rel] = hit
                continue
            try:
                entry, new = self._put(rel, Path(path))
            except (FileNotFoundError, PermissionError, sqlite3.Error) as exc:
                log.warning("checkpoint: skipping %s: %s", rel, exc)
                out.skipped.append(rel)
                continue
            out.files[rel] = FileEntry(entry.digest, entry.size, executable)
            if new:
                out.new_bytes += entry.size
            fresh[rel] = _Cached(
                st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, entry.digest, executable
            )
        if fresh != cache:
            self._cache = fresh
            self._save_cache(fresh)
        return out

    def _put(self, rel: str, path: Path) -> tuple[FileEntry, bool]:
        if rel != PROJECT_DATABASE:
            return self.blobs.put_file(path, MAX_FILE_BYTES)
        # A live database is copied through SQLite (its WAL included), never byte by byte.
        fd, name = tempfile.mkstemp(dir=self.root, suffix=".sqlite3")
        os.close(fd)
        try:
            source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                target = sqlite3.connect(name)
                with target:
                    source.backup(target)
                target.close()
            finally:
                source.close()
            return self.blobs.put_file(Path(name), MAX_FILE_BYTES)
        finally:
            Path(name).unlink(missing_ok=True)

    def record(
        self, capture: Capture, *, kind: str, previous: CheckpointRecord | None, **meta: Any
    ) -> CheckpointRecord | None:
        """Write a checkpoint of ``capture``; ``None`` when it equals ``previous`` (nothing
        changed) and ``kind`` is a step's (or the look before one, ``pre``): a step that changed
        nothing is not a checkpoint."""
        # Compressed: a manifest is ~120 bytes a file, and every changed step writes one.
        manifest_bytes = zlib.compress(_manifest_bytes(capture.files), 6)
        digest, new = self.blobs.put_bytes(manifest_bytes)
        if previous is not None and previous.manifest == digest and kind in ("step", "pre"):
            return None
        self.records.mkdir(parents=True, exist_ok=True, mode=0o700)
        number = (previous.number if previous is not None else 0) + 1
        rec = CheckpointRecord(
            number=number,
            manifest=digest,
            created_at=time.time(),
            kind=kind,
            files=len(capture.files),
            bytes=sum(e.size for e in capture.files.values()),
            new_bytes=capture.new_bytes + (len(manifest_bytes) if new else 0),
            skipped=tuple(capture.skipped),
            **meta,
        )
        path = self.records / f"{number:08d}.json"
        # O_EXCL: two writers never share a number (the manager's lock makes it moot here).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(rec.to_json(), fh)
        return rec

    # -- reading -----------------------------------------------------------------------

    def list(self) -> list[CheckpointRecord]:
        """Every checkpoint, oldest first."""
        if not self.records.exists():
            return []
        out = []
        for path in sorted(self.records.glob("*.json")):
            with contextlib.suppress(ValueError, KeyError, TypeError, FileNotFoundError):
                out.append(CheckpointRecord.from_json(json.loads(path.read_text())))
        return out

    def latest(self) -> CheckpointRecord | None:
        if not self.records.exists():
            return None
        names = sorted(self.records.glob("*.json"))
        for path in reversed(names):
            with contextlib.suppress(ValueError, KeyError, TypeError, FileNotFoundError):
                return CheckpointRecord.from_json(json.loads(path.read_text()))
        return None

    def get(self, number: int) -> CheckpointRecord:
        path = self.records / f"{number:08d}.json"
        try:
            return CheckpointRecord.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            msg = f"no checkpoint {number} (it may have been dropped by retention)"
            raise NotFound(msg) from None

    def manifest(self, record: CheckpointRecord) -> dict[str, FileEntry]:
        """The files of a checkpoint (the release store's manifest layout, compressed)."""
        data = json.loads(zlib.decompress(self.blobs.read_bytes(record.manifest)))
        return {
            path: FileEntry(item["sha256"], int(item["size"]), bool(item["exec"]))
            for path, item in data["files"].items()
        }

    def content(self, entry: FileEntry | None) -> bytes | None:
        return None if entry is None else self.blobs.read_bytes(entry.digest)

    def blob_path(self, entry: FileEntry) -> Path:
        return self.blobs.path_for(entry.digest)

    def stored_bytes(self) -> int:
        """What the project's checkpoints take on disk (blobs and records)."""
        total = 0
        for folder in (self.blobs.blobs, self.records):
            if folder.exists():
                total += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        return total

    # -- retention ---------------------------------------------------------------------

    def prune(self, keep: int) -> int:
        """Drop all but the newest ``keep`` checkpoints and the blobs only they used."""
        records = sorted(self.records.glob("*.json")) if self.records.exists() else []
        dropped = records[: max(0, len(records) - keep)]
        if not dropped:
            return 0
        for path in dropped:
            path.unlink(missing_ok=True)
        used: set[str] = set()
        for rec in self.list():
            used.add(rec.manifest)
            used.update(entry.digest for entry in self.manifest(rec).values())
        removed = 0
        # No grace period: only this store's lock holder writes here, and it is us.
        for path in self.blobs.blobs.glob("*/*"):
            if path.parent.name + path.name not in used:
                path.unlink(missing_ok=True)
                removed += 1
        # Cached hashes may name removed blobs: forget them (the next capture re-hashes).
        self._cache = {}
        self._cache_path.unlink(missing_ok=True)
        log.info(
            "checkpoints of %s: dropped %d, removed %d blobs", self.root.name, len(dropped), removed
        )
        return len(dropped)
