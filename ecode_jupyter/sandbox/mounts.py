"""The file system a sandboxed process sees, as bubblewrap arguments.

The root is an empty tmpfs; into it go, read-only, only what programs need: ``/usr`` (and the
``/bin``, ``/lib*``, ``/sbin`` links or folders), the pieces of ``/etc`` that name resolution,
TLS, users and the dynamic linker read, and the runtimes the server knows of (its Python
installation and virtual environment, Node when it lives outside ``/usr``). Then a private
``/tmp``, a minimal ``/dev``, a ``/proc`` of the process's own PID namespace, and the project's
folders, writable, at their own paths (so ``.venv`` shebangs, ``VIRTUAL_ENV`` and
``DATABASE_URL`` stay valid). Nothing else of the host exists inside: not the server's home,
its Jupyter runtime/config/data folders, the database, the secrets key, other workspaces.

``/etc`` is never bound whole: as root the sandboxed process is mapped to host uid 0, and a
0600 root file such as ``/etc/shadow`` would be readable through a bind. A copy of the
entries programs read, made of what any user may read, is bound instead (:class:`EtcSnapshot`).

Runtimes come only from the server's side (its interpreter, its configuration), never from a
project's files: a project's ``.venv/pyvenv.cfg`` is writable by project code and naming
``/root`` in it must not make ``/root`` appear.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path

# Top-level names that are links into /usr on merged-/usr systems, or folders elsewhere.
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What programs read in /etc: resolver, TLS roots, users and groups, the dynamic linker,
# time zone, MIME types, alternatives (Debian's /usr/bin/* links go through it), and the
# system's pip/npm/git configuration (package index mirrors, CA bundles).
ETC_ENTRIES = (
    "resolv.conf",
    "hosts",
    "host.conf",
    "nsswitch.conf",
    "gai.conf",
    "services",
    "protocols",
    "networks",
    "passwd",
    "group",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "crypto-policies",
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "mime.types",
    "magic",
    "magic.mime",
    "fonts",
    "os-release",
    "debian_version",
    "lsb-release",
    "python3",
    f"python{sys.version_info.major}.{sys.version_info.minor}",
    "pip.conf",
    "npmrc",
    "gitconfig",
    "terminfo",
    "inputrc",
)
# Variables the server passes to project processes that name a local file or folder they need
# (a wheel folder, a CA bundle, a pip config): those paths are bound read-only.
PATH_VARIABLES = (
    "PIP_FIND_LINKS",
    "PIP_CONFIG_FILE",
    "PIP_CERT",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
)


def _prefix_of(executable: str | Path) -> Path:
    """The installation folder of an interpreter: ``…/bin/python3`` → ``…``."""
    real = Path(os.path.realpath(executable))
    return real.parent.parent if real.parent.name == "bin" else real.parent


def runtime_paths(extra: Iterable[Path] = ()) -> tuple[Path, ...]:
    """Installations outside /usr that project processes run: the server's Python (its base
    installation and its virtual environment, which runs previews of projects without a venv
    of their own and creates project venvs), Node/npm, and ``extra`` from the configuration."""
    found: list[Path] = [
        Path(os.path.realpath(sys.base_prefix)),
        Path(os.path.realpath(sys.prefix)),
    ]
    found.append(_prefix_of(sys.executable))
    base_executable = getattr(sys, "_base_executable", "")
    if base_executable:
        found.append(_prefix_of(base_executable))
    for tool in ("node", "npm", "python3"):
        where = shutil.which(tool)
        if where:
            found.append(_prefix_of(where))
    found.extend(Path(os.path.realpath(p)) for p in extra)
    return _outermost(p for p in found if p.exists() and not _under(p, Path("/usr")))


def env_paths(env: Mapping[str, str]) -> tuple[Path, ...]:
    """Local paths named by ``PATH_VARIABLES`` in ``env`` that exist."""
    found = []
    for name in PATH_VARIABLES:
        for item in env.get(name, "").split():
            item = item.removeprefix("file://")
            if item.startswith("/") and os.path.exists(item):
                found.append(Path(os.path.realpath(item)))
    return _outermost(found)


def _under(path: Path, parent: Path) -> bool:
    return path == parent or path.is_relative_to(parent)


def _outermost(paths: Iterable[Path]) -> tuple[Path, ...]:
    """Drop paths inside another one of the list (binding the outer one covers them)."""
    result: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if not any(_under(path, kept) for kept in result):
            result.append(path)
    return tuple(result)


def system_args() -> list[str]:
    """Read-only system folders (``/etc`` comes from :class:`EtcSnapshot`)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in SYSTEM_DIRS:
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    return args


_SNAPSHOTS: dict[str, EtcSnapshot] = {}


class EtcSnapshot:
    """A copy of the ``/etc`` entries programs need, bound in as ``/etc`` with one mount.

    One mount instead of thirty-odd binds halves what bubblewrap takes to start. Only what
    every user of the host may read is copied (``/etc/ssl/private`` is not): a root server's
    sandboxed processes are the host's uid 0 to the kernel, and would pass a 0700 check. A
    link into ``/usr`` stays a link; any other (``resolv.conf`` → ``/run/…``) is copied as
    what it points to. The copy is remade when an entry changes (a new resolv.conf).
    """

    def __init__(self, source: str = "/etc", entries: Iterable[str] = ETC_ENTRIES) -> None:
        self.source = source
        self.entries = tuple(entries)
        self._root = Path(tempfile.mkdtemp(prefix="ecode-sandbox-etc-"))
        os.chmod(self._root, 0o755)
        # Removed with the server; a running sandbox keeps its bound copy until it ends.
        weakref.finalize(self, shutil.rmtree, self._root, True)
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._current = self._root / "0"

    @classmethod
    def shared(cls, source: str = "/etc") -> EtcSnapshot:
        """One copy per process: the first launcher makes it (at server start, not at the
        first command), later ones in the same process (tests start many) reuse it."""
        if source not in _SNAPSHOTS:
            _SNAPSHOTS[source] = cls(source)
        snapshot = _SNAPSHOTS[source]
        snapshot.path()
        return snapshot

    def _stat_signature(self) -> tuple[tuple[str, int, int], ...]:
        found = []
        for entry in self.entries:
            try:
                st = os.stat(os.path.join(self.source, entry))
            except OSError:
                continue
            found.append((entry, st.st_mtime_ns, st.st_size))
        return tuple(found)

    def path(self) -> Path:
        """The current copy (remade first when an entry of ``/etc`` changed)."""
        signature = self._stat_signature()
        if signature != self._signature:
            target = self._root / str(len(list(self._root.iterdir())))
            target.mkdir(mode=0o755)
            for entry in self.entries:
                _copy_readable(os.path.join(self.source, entry), target / entry)
            self._signature, self._current = signature, target
        return self._current


def _world_readable(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    need = 0o005 if stat.S_ISDIR(mode) else 0o004
    return mode & need == need


def _copy_readable(src: str, dest: Path) -> None:
    if os.path.islink(src):
        real = os.path.realpath(src)
        if _under(Path(real), Path("/usr")):
            os.symlink(os.readlink(src) if os.path.isabs(os.readlink(src)) else real, dest)
            return
        src = real
    if not _world_readable(src):
        return
    if os.path.isdir(src):
        _copy_tree(src, dest)
    elif os.path.isfile(src):
        shutil.copyfile(src, dest)


def _copy_tree(src: str, dest: Path) -> None:
    """Folders, files and links (as links: their targets are in /usr or in the copy), without
    the metadata copies ``shutil.copytree`` makes; ~10x faster on /etc/ssl's hundreds of links."""
    dest.mkdir(mode=0o755)
    with os.scandir(src) as entries:
        for entry in entries:
            target = dest / entry.name
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            elif not _world_readable(entry.path):
                continue
            elif entry.is_dir():
                _copy_tree(entry.path, target)
            elif entry.is_file():
                shutil.copyfile(entry.path, target)


def hidden_args(hidden: Iterable[Path], bound: Iterable[Path]) -> list[str]:
    """Cover each hidden server path that lies inside something bound in: an empty tmpfs
    over a folder, /dev/null over a file. Must come after the binds it covers."""
    args: list[str] = []
    bound = tuple(bound)
    # A hidden path not inside anything bound is absent already.
    inside = [path for path in hidden if any(_under(path, b) for b in bound)]
    for path in _outermost(inside):
        if path.is_dir():
            args += ["--tmpfs", str(path)]
        elif path.exists():
            args += ["--ro-bind", "/dev/null", str(path)]
    return args
