"""Content-addressed release snapshots: every file stored once, by its SHA-256.

A snapshot walks the workspace (skipping virtual environments, ``node_modules``, caches and
the project's ``.ecode`` data folder), copies each file into the blob store while hashing it
(one pass, so a file edited mid-snapshot cannot be stored under the wrong hash), and writes a
manifest — path → hash, size, executable bit — that is itself a blob. The manifest's hash
names the release's content: two releases of unchanged files share every blob.

A release runs from a fresh copy of its files (``materialize``), never from the store itself,
so an app that writes into its folder cannot corrupt the snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import EcodeError, InvalidInput

log = logging.getLogger(__name__)

SNAPSHOT_SKIPPED_DIRS = frozenset(
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
        ".ecode",
        ".jupyter",
        ".cache",
    }
)
SNAPSHOT_SKIPPED_SUFFIXES = frozenset({".pyc", ".pyo"})
MANIFEST_VERSION = 1
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    digest: str
    size: int
    executable: bool

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.digest, "size": self.size, "exec": self.executable}


@dataclass(frozen=True)
class Snapshot:
    digest: str
    files: dict[str, FileEntry]
    new_blobs: int
    skipped: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())


@dataclass(frozen=True)
class SnapshotLimits:
    max_files: int = 20_000
    max_file_bytes: int = 100 * 1024 * 1024
    max_total_bytes: int = 512 * 1024 * 1024


def walk_files(workspace: Path, skipped: list[str] | None = None) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, path) of every file a release or an export holds, sorted.

    Symbolic links are left out (and named in ``skipped``): a link could point anywhere.
    """
    root = workspace.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SNAPSHOT_SKIPPED_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.suffix in SNAPSHOT_SKIPPED_SUFFIXES:
                continue
            if path.is_symlink() or not path.is_file():
                if skipped is not None:
                    skipped.append(rel)
                continue
            yield rel, path


def _manifest_bytes(files: dict[str, FileEntry]) -> bytes:
    body = {
        "version": MANIFEST_VERSION,
        "files": {path: files[path].to_json() for path in sorted(files)},
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class BlobStore:
    """Blobs at ``root/blobs/ab/cdef…`` (SHA-256 hex), written atomically, never changed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.runs = root / "runs"
        self._tmp = root / "tmp"

    def _ensure(self) -> None:
        for folder in (self.blobs, self.runs, self._tmp):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path_for(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            msg = "not a sha256 digest"
            raise InvalidInput(msg)
        return self.blobs / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def blob_count(self) -> int:
        return sum(1 for p in self.blobs.glob("*/*") if p.is_file()) if self.blobs.exists() else 0

    def _commit(self, tmp: Path, digest: str) -> bool:
        """Move a finished temp file into place; False when the blob was already stored."""
        target = self.path_for(digest)
        if target.exists():
            tmp.unlink()
            _touch(target)  # in use again: collection leaves recently used blobs alone
            return False
        target.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o400)
        os.replace(tmp, target)
        return True

    def put_bytes(self, data: bytes) -> tuple[str, bool]:
        self._ensure()
        digest = hashlib.sha256(data).hexdigest()
        if self.has(digest):
            _touch(self.path_for(digest))
            return digest, False
        fd, name = tempfile.mkstemp(dir=self._tmp)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return digest, self._commit(Path(name), digest)

    def put_file(self, src: Path, max_bytes: int) -> tuple[FileEntry, bool]:
        """Copy ``src`` in while hashing it; returns its entry and whether it was new."""
        self._ensure()
        hasher = hashlib.sha256()
        size = 0
        fd, name = tempfile.mkstemp(dir=self._tmp)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, src.open("rb") as fh:
                mode = os.fstat(fh.fileno()).st_mode
                while chunk := fh.read(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        msg = f"{src.name} is larger than {max_bytes} bytes"
                        raise InvalidInput(msg)
                    hasher.update(chunk)
                    out.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        digest = hasher.hexdigest()
        new = self._commit(tmp, digest)
        return FileEntry(digest, size, bool(mode & stat.S_IXUSR)), new

    def read_bytes(self, digest: str) -> bytes:
        try:
            return self.path_for(digest).read_bytes()
        except FileNotFoundError as exc:
            msg = f"release blob {digest[:12]} is missing from the store"
            raise EcodeError(msg) from exc

    def snapshot(self, workspace: Path, limits: SnapshotLimits | None = None) -> Snapshot:
        """Store the workspace's files and their manifest. Blocking: run it in a thread."""
        limits = limits or SnapshotLimits()
        files: dict[str, FileEntry] = {}
        skipped: list[str] = []
        new_blobs = 0
        total = 0
        for rel, path in walk_files(workspace, skipped):
            if len(files) >= limits.max_files:
                msg = f"the project has more than {limits.max_files} files to release"
                raise InvalidInput(msg)
            entry, new = self.put_file(path, limits.max_file_bytes)
            total += entry.size
            if total > limits.max_total_bytes:
                msg = f"the project is larger than {limits.max_total_bytes} bytes"
                raise InvalidInput(msg)
            files[rel] = entry
            new_blobs += int(new)
        digest, new = self.put_bytes(_manifest_bytes(files))
        log.info(
            "snapshot of %s: %d files, %d bytes, %d new blobs",
            workspace.name,
            len(files),
            total,
            new_blobs + int(new),
        )
        return Snapshot(digest, files, new_blobs + int(new), tuple(skipped))

    def manifest(self, digest: str) -> dict[str, FileEntry]:
        data = json.loads(self.read_bytes(digest))
        if data.get("version") != MANIFEST_VERSION:
            msg = f"release manifest {digest[:12]} has an unknown version"
            raise EcodeError(msg)
        return {
            path: FileEntry(item["sha256"], int(item["size"]), bool(item["exec"]))
            for path, item in data["files"].items()
        }

    def materialize(self, digest: str, dest: Path) -> int:
        """Write the release's files into ``dest`` (created, must not exist). Blocking."""
        files = self.manifest(digest)
        dest.mkdir(parents=True, exist_ok=False)
        base = dest.resolve()
        for rel, entry in files.items():
            target = (dest / rel).resolve()
            if not target.is_relative_to(base):
                msg = f"release manifest has a path outside its folder: {rel!r}"
                raise EcodeError(msg)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.path_for(entry.digest), target)
            os.chmod(target, 0o755 if entry.executable else 0o644)
        return len(files)

    def run_dir(self, name: str) -> Path:
        self._ensure()
        return self.runs / name

    def remove_run_dir(self, name: str) -> None:
        shutil.rmtree(self.runs / name, ignore_errors=True)

    def collect(self, manifests: Iterable[str], grace_s: float = 3600.0) -> int:
        """Remove blobs no release uses: neither one of ``manifests`` (every release the
        database knows) nor a file one of them lists. Blobs written or reused in the last
        ``grace_s`` seconds stay (a snapshot in progress has no release row yet), and so
        does everything when a manifest cannot be read (better a full disk than a lost
        release). Also clears temp files older than the grace period. Blocking."""
        if not self.blobs.exists():
            return 0
        keep: set[str] = set()
        for digest in manifests:
            if not self.has(digest):
                continue  # a release stored elsewhere (another server on the same database)
            try:
                files = self.manifest(digest)
            except (EcodeError, InvalidInput, ValueError, KeyError) as exc:
                log.warning("not collecting release blobs: manifest %s: %s", digest[:12], exc)
                return 0
            keep.add(digest)
            keep.update(entry.digest for entry in files.values())
        cutoff = time.time() - grace_s
        removed = 0
        for path in self.blobs.glob("*/*"):
            digest = path.parent.name + path.name
            try:
                if digest in keep or path.stat().st_mtime > cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
        for tmp in self._tmp.glob("*") if self._tmp.exists() else ():
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
        if removed:
            log.info("release store: removed %d blobs no release uses", removed)
        return removed


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)
