"""The sandbox's policy (what to enforce) and report (what one launch got).

The policy comes from the server's configuration (``c.EcodeApp.sandbox*``); the report is what
one launch actually got on this host. A host that cannot apply part of the policy (no
bubblewrap, no cgroup controller) gets the rest, and the report names what is missing and
why, so it can be shown with the command's output, in an app's log and in the server log.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

GiB = 1024**3
MiB = 1024**2

SandboxMode = Literal["auto", "required", "off"]
NetworkMode = Literal["on", "loopback"]


@dataclass(frozen=True)
class SandboxPolicy:
    """How project processes are confined. ``None`` for a limit means no limit."""

    # auto: sandbox when the host can, otherwise run with a warning; required: refuse to run
    # project code without namespaces; off: plain processes (rlimits and a clean env only).
    mode: SandboxMode = "auto"
    # on: the host's network (package indexes, APIs, and the host's loopback); loopback: a
    # private network namespace with only its own loopback. Apps the proxy serves always
    # share the host's network.
    network: NetworkMode = "on"
    memory_bytes: int | None = 4 * GiB
    pids: int | None = 1024
    cpus: float | None = None
    file_size_bytes: int | None = 2 * GiB
    open_files: int | None = 4096
    tmp_bytes: int = 1 * GiB
    # Server files that must never show inside, even when they lie under something that is
    # bound in (the Jupyter runtime/config/data dirs, the database, the secrets key, the home).
    hidden: tuple[Path, ...] = ()
    # Installations a project runs besides the system's /usr (Python, Node), read-only.
    read_only: tuple[Path, ...] = ()
    bwrap: str = "bwrap"


@dataclass(frozen=True)
class SandboxReport:
    """What one launch got: ``applied`` and ``missing`` are short phrases, ``missing`` with why."""

    mechanism: str
    applied: tuple[str, ...] = ()
    missing: tuple[str, ...] = field(default_factory=tuple)

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        """One line for a tool result or a log: mechanism, what applied, what did not."""
        line = f"{self.mechanism}: {', '.join(self.applied)}" if self.applied else self.mechanism
        if self.missing:
            line += f"; NOT applied: {'; '.join(self.missing)}"
        return line

    def notes(self) -> tuple[str, ...]:
        """Lines to show with a command's output: only what did not apply."""
        if not self.missing:
            return ()
        return (f"sandbox: not applied on this host: {'; '.join(self.missing)}",)

    def with_devices(self, devices: tuple[Path, ...], *, isolated: bool) -> SandboxReport:
        """This report with the launch's device nodes (a kernel's leased GPUs) named."""
        names = ", ".join(str(node) for node in devices)
        if isolated:
            return replace(self, applied=(*self.applied, f"devices: only {names}"))
        # Without a mount namespace the process sees the host's whole /dev.
        missing = f"device isolation (every GPU of the host is visible, not only {names})"
        return replace(self, missing=(*self.missing, missing))
