"""What the benchmarks share: a free port, percentiles, and a Jupyter server to measure.

The benchmarks run as scripts (``python benchmarks/bench_x.py``), so this module is found
next to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(samples: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0.5 for the median, 0.99 for p99)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spawn_jupyter(
    tmp: Path,
    port: int,
    *,
    app: str = "jupyter_server",
    root: Path | None = None,
    env: Mapping[str, str | None] | None = None,
    args: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """A Jupyter server (or lab) with the ecode extension on a throwaway config, data and
    SQLite database under ``tmp``. ``env`` adds variables (None removes one)."""
    environ = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "ECODE_DATABASE_URL": f"sqlite:///{tmp / 'ecode.sqlite'}",
    }
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    argv = [
        sys.executable,
        "-m",
        app,
        f"--port={port}",
        "--ip=127.0.0.1",
        "--no-browser",
        "--allow-root",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={root or tmp}",
        "--ServerApp.jpserver_extensions={'ecode_jupyter': True}",
        "--ServerApp.log_level=WARN",
        *args,
    ]
    return subprocess.Popen(argv, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_ready(proc: subprocess.Popen[bytes], base: str, timeout_s: float) -> None:
    request = urllib.request.Request(
        f"{base.rstrip('/')}/api/status", headers={"Authorization": f"token {TOKEN}"}
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            msg = f"jupyter exited early:\n{err[-3000:]}"
            raise RuntimeError(msg)
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    msg = f"jupyter did not become ready in {timeout_s:g} s"
    raise RuntimeError(msg)


async def wait_ready(proc: subprocess.Popen[bytes], base: str, timeout_s: float = 60.0) -> None:
    """Until the server at ``base`` answers ``/api/status``; raises if it exits first."""
    await asyncio.to_thread(_wait_ready, proc, base, timeout_s)


@contextlib.contextmanager
def scratch_postgres(server_url: str) -> Iterator[str]:
    """A new database on the PostgreSQL server at ``server_url``, upgraded to head; its URL.
    Dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from ecode_jupyter.db import Database
    from ecode_jupyter.db.schema import upgrade

    name = f"ecode_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        db = Database(url)
        upgrade(db)
        db.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
