"""The service's side of a hub release: the archive a user's server hands over is hostile
input (the server is its owner's to change), so unpacking it must never write outside the
staging copy, never take links or devices, stay within the snapshot's limits, and leave the
current copy whole when it refuses."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.deploy.releases import SnapshotLimits
from ecode_jupyter.exceptions import InvalidInput
from ecode_jupyter.hub.releases import HubReleaseSource


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.fixture
def source(tmp_path: Path) -> HubReleaseSource:
    limits = SnapshotLimits(max_files=5, max_file_bytes=1024, max_total_bytes=2048)
    return HubReleaseSource(placement=Any, staging_root=tmp_path, limits=limits)  # type: ignore[arg-type]


@pytest.fixture
def current(tmp_path: Path) -> Path:
    """The staging copy the live release runs on, with what the app keeps in .ecode."""
    workspace = tmp_path / "p1"
    (workspace / ".ecode").mkdir(parents=True)
    (workspace / "app.py").write_text("v1")
    (workspace / ".ecode" / "database.sqlite3").write_text("live data")
    return workspace


def test_a_good_archive_replaces_the_copy_and_keeps_the_apps_data(
    source: HubReleaseSource, current: Path
) -> None:
    archive = _tar(_file("app.py", b"v2"), _file("static/site.css", b"body{}"))
    source._unpack(archive, current)
    assert (current / "app.py").read_text() == "v2"
    assert (current / "static" / "site.css").read_text() == "body{}"
    assert (current / ".ecode" / "database.sqlite3").read_text() == "live data"
    assert sorted(p.name for p in current.parent.iterdir()) == ["p1"]


@pytest.mark.parametrize(
    "members",
    [
        [_file("../outside.py", b"x")],
        [_file("/etc/evil.py", b"x")],
        [_file("a/../../outside.py", b"x")],
        [_special("link", tarfile.SYMTYPE, "/etc/shadow")],
        [_special("hard", tarfile.LNKTYPE, "/etc/shadow")],
        [_special("dev", tarfile.CHRTYPE)],
        [_special("fifo", tarfile.FIFOTYPE)],
        [_file("big.bin", b"x" * 2000)],
        [_file(f"f{i}.py", b"x" * 600) for i in range(4)],
        [_file(f"f{i}.py", b"") for i in range(6)],
    ],
    ids=[
        "dot-dot",
        "absolute",
        "nested-dot-dot",
        "symlink",
        "hardlink",
        "device",
        "fifo",
        "file-too-big",
        "total-too-big",
        "too-many-files",
    ],
)
def test_a_hostile_archive_is_refused_and_the_copy_left_whole(
    source: HubReleaseSource, current: Path, members: list[Any], tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput):
        source._unpack(_tar(*members), current)
    assert (current / "app.py").read_text() == "v1"
    assert (current / ".ecode" / "database.sqlite3").read_text() == "live data"
    # Nothing written beside the copy or above it, no half-unpacked folder left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p1"]
    assert not (tmp_path.parent / "outside.py").exists()


def test_garbage_is_refused(source: HubReleaseSource, current: Path) -> None:
    with pytest.raises(InvalidInput):
        source._unpack(io.BytesIO(b"not a tar at all" * 100), current)
    assert (current / "app.py").read_text() == "v1"


async def test_a_refusal_by_the_projects_server_says_why(tmp_path: Path) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    from ecode_jupyter.exceptions import Conflict

    class Refuse(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"error": {"code": "invalid_input", "message": "too large"}})
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    placement = SimpleNamespace(directory=SimpleNamespace(link=SimpleNamespace(token="t")))
    source = HubReleaseSource(placement=placement, staging_root=tmp_path)  # type: ignore[arg-type]
    try:
        with pytest.raises(Conflict) as refused, open(tmp_path / "archive", "wb") as into:
            url = f"http://127.0.0.1:{server.server_address[1]}/archive"
            await source._download(url, into)
    finally:
        server.shutdown()
    assert "(400): too large" in refused.value.message
