"""Apps a previous life of this server left running, found and ended at start-up.

Every app process carries ``ECODE_APP={server tag}:{deployment id}`` in its environment, and
so does everything it starts (environments are inherited). An app normally dies with the
server: in the sandbox, bubblewrap's ``--die-with-parent`` ends its PID namespace; without
one, the app's first process gets the parent-death signal (``ResourceLimits.die_with_parent``).
What can still outlive a crash — a child that app process started outside any PID namespace,
or an app whose server died between ``fork`` and ``prctl`` — is found here by that mark in
``/proc/*/environ`` and killed before the server tidies its rows and resumes its releases.

The mark is not a secret and proves nothing: a process that copies another server's mark can
only get itself killed when that server starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import time

log = logging.getLogger(__name__)

APP_MARKER = "ECODE_APP"
# A process may fork while it is being killed: look again, this many times at most.
_ROUNDS = 10
# How long to wait for killed processes to be gone, per round.
_WAIT_S = 5.0


def identity_tag(server_id: str) -> str:
    """A short, stable tag of the server's identity for the mark (identities are long)."""
    return hashlib.sha256(server_id.encode()).hexdigest()[:16]


def app_marker(tag: str, deployment_id: str) -> str:
    """The value of ``ECODE_APP`` for one deployment of the server tagged ``tag``."""
    return f"{tag}:{deployment_id}"


def _marked_pids(tag: str) -> list[int]:
    prefix = f"{APP_MARKER}={tag}:".encode()
    own = os.getpid()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []  # no procfs (not Linux): nothing to find this way
    for entry in entries:
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue  # gone meanwhile, or another user's process
        if any(item.startswith(prefix) for item in environ.split(b"\0")) and _alive(int(entry)):
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and waiting for its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    # The state follows the command, which is in parentheses and may hold anything.
    return stat.rsplit(b")", 1)[-1].split()[:1] not in ([b"Z"], [b"X"])


def kill_orphan_apps(tag: str) -> list[int]:
    """SIGKILL every process marked as an app of the server tagged ``tag``; returns their
    pids. Blocking (it reads ``/proc``): run it in a thread, before any app of this server
    starts — a running app of this server carries the same mark."""
    killed: list[int] = []
    for _ in range(_ROUNDS):
        pids = [pid for pid in _marked_pids(tag) if pid not in killed]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed.extend(pids)
        # SIGKILL takes effect asynchronously: wait (briefly) until they are gone, so an
        # app started next finds its port and files free.
        deadline = time.monotonic() + _WAIT_S
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.01)
    if killed:
        log.warning(
            "killed %d app processes a previous run of this server left behind", len(killed)
        )
    return killed
