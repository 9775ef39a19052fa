"""The one safe path resolver for project workspaces.

Every tool that touches a file goes through :func:`resolve_in_workspace`. A path given by a
model or an outside client is untrusted: it is checked lexically first (NUL bytes, absolute
and Windows forms, ``~``, ``..`` climbing out, overlong names), then resolved on the real file
system (symlinks followed) and checked for containment by path *components*, so a sibling
folder that merely shares a string prefix (``/ws/proj2`` next to ``/ws/proj``) is outside.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from ecode_jupyter.exceptions import PathOutsideWorkspace

# Linux NAME_MAX is 255 bytes per component; a whole relative path is capped well below
# PATH_MAX so the absolute path (root + rel) still fits.
MAX_COMPONENT_BYTES = 255
MAX_PATH_CHARS = 1024

# "C:", "c:foo", "C:\\x" — a drive-qualified path means the caller thinks in Windows paths,
# and on Linux it would silently create a file literally named "C:".
_DRIVE = re.compile(r"^[A-Za-z]:")
# Control characters in names break shells, logs and terminals; no project needs them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _refuse(rel: str, why: str) -> PathOutsideWorkspace:
    # repr() keeps hostile characters (newlines, escapes) from forging log lines or messages.
    shown = rel if len(rel) <= 120 else rel[:117] + "..."
    msg = f"path {shown!r} is refused: {why}"
    return PathOutsideWorkspace(msg, path=shown)


def check_relative(rel: str) -> PurePosixPath:
    """Validate ``rel`` lexically and return it normalized (no ``.``, no empty parts).

    Raises :class:`PathOutsideWorkspace` for anything that is not a plain relative path that
    stays inside its root. ``"."`` is the workspace root itself.
    """
    if not isinstance(rel, str):
        raise _refuse(repr(rel), "a path must be a string")
    if rel == "" or rel.strip() == "":
        raise _refuse(rel, "the path is empty")
    if "\x00" in rel:
        raise _refuse(rel, "it contains a NUL byte")
    if _CONTROL.search(rel):
        raise _refuse(rel, "it contains a control character")
    if len(rel) > MAX_PATH_CHARS:
        raise _refuse(rel, f"it is longer than {MAX_PATH_CHARS} characters")
    if "\\" in rel:
        raise _refuse(rel, "backslashes are not allowed; use '/' relative to the workspace")
    if rel.startswith("/"):
        raise _refuse(rel, "absolute paths are not allowed; give a path relative to the workspace")
    if _DRIVE.match(rel):
        raise _refuse(rel, "drive-qualified paths are not allowed")
    if rel.startswith("~"):
        raise _refuse(rel, "'~' is not expanded; give a path relative to the workspace")

    parts: list[str] = []
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            raise _refuse(rel, f"a name is longer than {MAX_COMPONENT_BYTES} bytes")
        if part == "..":
            if not parts:
                raise _refuse(rel, "it climbs out of the workspace with '..'")
            parts.pop()
            continue
        parts.append(part)
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def resolve_in_workspace(root: Path, rel: str) -> Path:
    """Return the real absolute path of ``rel`` inside ``root``, or refuse it.

    The result has every existing symlink resolved; the file itself need not exist. Raises
    :class:`PathOutsideWorkspace` (an ``InvalidInput``) when the path is malformed or resolves
    outside ``root``.
    """
    clean = check_relative(rel)
    real_root = Path(os.path.realpath(root))
    # realpath (strict=False) follows every symlink that exists and keeps the missing tail,
    # so a link planted anywhere along the path is judged by where it really points.
    candidate = Path(os.path.realpath(real_root / clean))
    # is_relative_to compares components, never string prefixes.
    if candidate != real_root and not candidate.is_relative_to(real_root):
        raise _refuse(rel, "it resolves outside the workspace (through a symlink)")
    return candidate


def workspace_relative(root: Path, path: Path) -> str:
    """The POSIX form of ``path`` relative to ``root`` (both already resolved), for messages."""
    real_root = Path(os.path.realpath(root))
    rel = path.relative_to(real_root).as_posix()
    return rel or "."


# Folders the file tools may read but never write, create or delete in (documented in
# docs/architecture.md, "What the file tools may write"). ``.venv`` is not among them: it is
# the project's own environment, which install_packages and run_command change anyway.
READ_ONLY_FOLDERS = {
    # hooks and config run as the user, outside any sandbox, the next time they use git
    ".git": "git's hooks and config would run outside the sandbox",
    # the server's own state for the project (its database, saved outputs)
    ".ecode": "it holds the server's state; use query_database for the database",
}


def check_writable(root: Path, path: Path, rel: str) -> None:
    """Refuse a write to ``path`` (resolved, inside ``root``) in a read-only folder.

    Judged on where the path really is, so a symlink into ``.git`` is refused too.
    """
    top = workspace_relative(root, path).split("/", 1)[0]
    why = READ_ONLY_FOLDERS.get(top)
    if why is not None:
        raise _refuse(rel, f"the file tools do not write in {top}/: {why}")
