"""The start-up sweep finds app processes by their mark and ends them, and only those."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from ecode_jupyter.deploy.orphans import APP_MARKER, app_marker, identity_tag, kill_orphan_apps

# An app that started a child of its own in another session, then both wait: what can
# outlive a server without a PID namespace (the parent-death signal reaches only the first).
_APP_WITH_CHILD = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print("up", flush=True)
time.sleep(600)
"""


def _start(marker: str | None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if marker is not None:
        env[APP_MARKER] = marker
    proc = subprocess.Popen(
        [sys.executable, "-c", _APP_WITH_CHILD], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    return proc


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()  # noqa: SIM115 - one read
            except OSError:
                continue
            # Field 4 (after the command in parentheses) is the parent's pid.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_marked_processes_and_their_children_are_killed_others_are_not() -> None:
    tag = identity_tag(f"test:{os.getpid()}")
    ours = _start(app_marker(tag, "dep1"))
    other = _start(app_marker(identity_tag("another server"), "dep2"))
    unmarked = _start(None)
    started = [ours, other, unmarked]
    try:
        (child,) = _children(ours.pid)
        killed = kill_orphan_apps(tag)
        assert sorted(killed) == sorted([ours.pid, child])
        assert ours.wait(30) == -9
        assert other.poll() is None and unmarked.poll() is None
        assert kill_orphan_apps(tag) == []
    finally:
        for proc in started:
            for pid in [proc.pid, *_children(proc.pid)]:
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)
            proc.wait()
