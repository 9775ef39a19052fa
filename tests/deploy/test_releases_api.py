"""Releases through a real server: health-gated go-live, immutability, rollback, export."""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.db.models import utcnow
from ecode_jupyter.deploy import tools as deploy_tools
from ecode_jupyter.identity import EcodeUser

from .apps import VERSIONED

Write = Callable[[Path, dict[str, str]], None]
NAVIGATE = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}


@pytest.fixture
def deploy(ecode_app: Any) -> Any:
    return ecode_app.ecode.extras["deploy"]


async def _live_text(app_fetch: Any, entry: str) -> tuple[int, str]:
    """What a browser sees at the project's live URL (following the one redirect)."""
    first = await app_fetch(entry, user="alice", headers=NAVIGATE)
    if first.code != 302:
        return first.code, first.text
    answer = await app_fetch(first.headers["Location"])
    return answer.code, answer.text


async def test_releases_go_live_only_when_healthy_and_roll_back(
    ecode_api: Any,
    app_fetch: Any,
    deploy: Any,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    r = await ecode_api("POST", "projects", body={"name": "Shop"})
    pid = r.body["id"]
    workspace = ecode_workspace_root / pid
    await ecode_api("PUT", f"projects/{pid}/secrets/API_KEY", body={"value": "s3cret"})

    def version(v: str) -> None:
        write_files(
            workspace,
            {"app.py": VERSIONED.replace("{version}", v), "Procfile": "web: python app.py\n"},
        )

    version("v1")
    first = await ecode_api("POST", f"projects/{pid}/releases", body={})
    assert first.status == 201 and first.body["status"] == "running", first.body
    assert first.body["release"]["number"] == 1 and first.body["live"]
    entry = first.body["entry_url"]
    assert "/ecode/live/@alice/shop/" in entry
    assert await _live_text(app_fetch, entry) == (200, "v1")

    version("v2")
    second = await ecode_api("POST", f"projects/{pid}/deployments", body={"kind": "release"})
    assert second.body["status"] == "running" and second.body["release"]["number"] == 2
    assert await _live_text(app_fetch, entry) == (200, "v2")
    # The old release's process is gone, and its link with it.
    assert (await app_fetch(first.body["url"])).code == 404

    # Editing the workspace does not touch what is live.
    version("v3-not-released")
    assert await _live_text(app_fetch, entry) == (200, "v2")

    version("crash-on-start")
    bad = await ecode_api("POST", f"projects/{pid}/releases", body={})
    assert bad.status == 201 and bad.body["status"] == "failed"
    assert "exited" in bad.body["reason"]
    assert any("cannot start" in line for line in bad.body["log_tail"])
    assert await _live_text(app_fetch, entry) == (200, "v2")

    releases = (await ecode_api("GET", f"projects/{pid}/releases")).body["releases"]
    assert [(x["number"], x["status"], x["live"]) for x in releases] == [
        (3, "failed", False),
        (2, "ready", True),
        (1, "ready", False),
    ]
    assert releases[0]["env_names"] == ["API_KEY"]  # names only: values stay in the store
    assert "s3cret" not in str(releases)

    rolled = await ecode_api("POST", f"projects/{pid}/releases/{releases[2]['id']}/rollback")
    assert rolled.status == 201 and rolled.body["status"] == "running"
    assert await _live_text(app_fetch, entry) == (200, "v1")
    releases = (await ecode_api("GET", f"projects/{pid}/releases")).body["releases"]
    assert [x["number"] for x in releases if x["live"]] == [1]

    one = await ecode_api("GET", f"projects/{pid}/releases/{releases[2]['id']}")
    assert [f["path"] for f in one.body["files"]] == ["Procfile", "app.py"]

    # A restart of the server resumes the live release.
    await deploy.stop_all()
    assert (await app_fetch(entry, user="alice")).code == 404
    await deploy.start()
    for _ in range(200):
        if deploy.app_in_slot(pid, "release") is not None:
            break
        await asyncio.sleep(0.05)
    live = deploy.app_in_slot(pid, "release")
    assert live is not None and live.release_number == 1


async def test_export_of_the_workspace_and_of_a_release(
    ecode_api: Any,
    app_fetch: Any,
    deploy: Any,
    jp_http_port: int,
    jp_base_url: str,
) -> None:
    r = await ecode_api("POST", "projects", body={"name": "Todo", "template": "flask-api"})
    pid = r.body["id"]
    exported = await ecode_api("GET", f"projects/{pid}/export")
    assert exported.status == 200
    assert set(exported.body["files"]) == {"Dockerfile", ".dockerignore", "service.yaml"}
    assert {"app.py", "requirements.txt"} <= set(exported.body["context"])

    release = await ecode_api("POST", f"projects/{pid}/releases", body={})
    release_id = release.body["release"]["id"]
    archive = await app_fetch(
        f"{jp_base_url}api/ecode/projects/{pid}/export?format=tar.gz&release={release_id}",
        user="alice",
    )
    assert archive.code == 200
    assert archive.headers["Content-Type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.body)) as tar:
        names = set(tar.getnames())
    assert {
        "todo-release-1/Dockerfile",
        "todo-release-1/app.py",
        "todo-release-1/requirements.txt",
    } <= names

    bad = await ecode_api("GET", f"projects/{pid}/export?format=zip")
    assert bad.status == 400
    missing = await ecode_api("GET", f"projects/{pid}/export?release=0123abcd")
    assert missing.status == 404


async def test_tool_functions_start_and_report_a_preview(
    ecode_app: Any,
    ecode_api: Any,
    app_fetch: Any,
    deploy: Any,
    ecode_workspace_root: Path,
) -> None:
    r = await ecode_api("POST", "projects", body={"name": "Agent", "template": "flask-api"})
    pid = r.body["id"]
    alice = EcodeUser("alice", "Alice", False)
    before = await deploy_tools.preview_status(ecode_app.ecode, alice, pid)
    assert before["running"] is False and before["preview"] is None
    started = await deploy_tools.start_preview(ecode_app.ecode, alice, pid)
    assert started["status"] == "running" and started["local_url"].startswith("http://127.")
    status = await deploy_tools.preview_status(ecode_app.ecode, alice, pid)
    assert status["running"] is True
    assert status["preview"]["health"] == {"path": "/health", "status": 200}
    assert any("ready on port" in line for line in status["preview"]["log_tail"])

    # A preview that cannot start is an error for the tool, with the app's own words.
    (ecode_workspace_root / pid / "app.py").write_text("raise SystemExit('missing API_KEY')\n")
    with pytest.raises(deploy_tools.PreviewFailed) as failed:
        await deploy_tools.start_preview(ecode_app.ecode, alice, pid, restart=True)
    assert "missing API_KEY" in failed.value.message


async def test_files_of_purged_projects_releases_are_collected(
    ecode_api: Any,
    app_fetch: Any,
    ecode_app: Any,
    deploy: Any,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    releases = {}
    for name, text in (("Kept", "kept"), ("Gone", "gone")):
        r = await ecode_api("POST", "projects", body={"name": name})
        pid = r.body["id"]
        files = {"app.py": VERSIONED.replace("{version}", text), "Procfile": "web: python app.py\n"}
        write_files(ecode_workspace_root / pid, files)
        released = await ecode_api("POST", f"projects/{pid}/releases", body={})
        assert released.body["status"] == "running", released.body
        releases[name] = (pid, released.body)
    store = deploy.store
    before = store.blob_count()

    gone_id = releases["Gone"][0]
    assert (await ecode_api("DELETE", f"projects/{gone_id}")).status in (200, 204)
    # Nothing is collected while the project is only in the trash: it can be restored.
    assert await deploy.collect_release_blobs(grace_s=0) == 0
    await ecode_app.ecode.projects.purge_expired(now=utcnow() + timedelta(days=365))
    removed = await deploy.collect_release_blobs(grace_s=0)
    assert removed == 2  # the purged release's manifest and its own app.py; the Procfile is shared
    assert store.blob_count() == before - 2

    # The other project's release still rolls back from the store.
    kept_id, kept = releases["Kept"]
    rolled = await ecode_api(
        "POST", f"projects/{kept_id}/releases/{kept['release']['id']}/rollback", body={}
    )
    assert rolled.status == 201 and rolled.body["status"] == "running", rolled.body
    assert await _live_text(app_fetch, kept["entry_url"]) == (200, "kept")
