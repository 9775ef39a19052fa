"""Runs, members, secrets and the audit trail in pages (issue 17, 9), as GET projects is.

Each list takes ``limit`` and ``cursor`` and answers ``next_cursor`` (None after the last page);
following the cursors gives every item exactly once, in the list's order, and a bad limit or
cursor is a 400 naming it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# Not base64; no list; a list of the wrong length for every list here; a lone surrogate; a
# key past 64 bits; too long.
BAD_CURSORS = [
    "nope!",
    _b64({"a": 1}),
    _b64(["x", 1, 2]),
    _b64(["\ud800", "a"]),
    _b64(["\ud800"]),
    _b64([2**70]),
    "x" * 2000,
]


@pytest.fixture(autouse=True)
def unreachable_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # Runs fail at their first model call instead of building an app.
    for name in ("ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "pages")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")


async def _all_pages(ecode_api: Any, path: str, key: str, *, user: str = "alice") -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(20):
        query = f"{path}?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await ecode_api("GET", query, user=user)
        assert page.status == 200, page.body
        assert len(page.body[key]) <= 2
        items += page.body[key]
        cursor = page.body["next_cursor"]
        if cursor is None:
            return items
    pytest.fail(f"{path} never ended")


async def _bad_paging_is_400(ecode_api: Any, path: str, *, user: str = "alice") -> None:
    for query in ["limit=0", "limit=abc", "limit=100000", *(f"cursor={c}" for c in BAD_CURSORS)]:
        resp = await ecode_api("GET", f"{path}?{query}", user=user)
        assert resp.status == 400, (path, query, resp.body)
        assert resp.error_code == "invalid_input"


async def _project(ecode_api: Any) -> str:
    created = await ecode_api("POST", "projects", body={"name": "Paged"})
    assert created.status == 201, created.body
    return str(created.body["id"])


async def test_members_and_secrets_come_in_pages(ecode_api: Any) -> None:
    pid = await _project(ecode_api)
    for name in ("bob", "carol", "dave", "erin"):
        added = await ecode_api("PUT", f"projects/{pid}/members/{name}", body={"role": "viewer"})
        assert added.status == 200, added.body
    members = await _all_pages(ecode_api, f"projects/{pid}/members", "members")
    assert [m["user"] for m in members] == ["alice", "bob", "carol", "dave", "erin"]
    await _bad_paging_is_400(ecode_api, f"projects/{pid}/members")

    for name in ("E", "A", "D", "B", "C"):
        put = await ecode_api("PUT", f"projects/{pid}/secrets/{name}", body={"value": "v"})
        assert put.status == 200, put.body
    secrets = await _all_pages(ecode_api, f"projects/{pid}/secrets", "secrets")
    assert [s["name"] for s in secrets] == ["A", "B", "C", "D", "E"]
    await _bad_paging_is_400(ecode_api, f"projects/{pid}/secrets")


async def test_runs_come_in_pages_newest_first(ecode_api: Any) -> None:
    pid = await _project(ecode_api)
    started = []
    for n in range(5):
        run = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": f"step {n}"})
        assert run.status == 201, run.body
        started.append(run.body["id"])
        # One active run per project: end this one before the next.
        cancelled = await ecode_api("POST", f"runs/{run.body['id']}/cancel")
        assert cancelled.status in (200, 409), cancelled.body
    runs = await _all_pages(ecode_api, f"projects/{pid}/runs", "runs")
    assert [r["id"] for r in runs] == started[::-1]
    await _bad_paging_is_400(ecode_api, f"projects/{pid}/runs")


async def test_the_audit_trail_comes_in_pages(ecode_api: Any) -> None:
    pid = await _project(ecode_api)
    for name in ("A", "B", "C"):
        put = await ecode_api("PUT", f"projects/{pid}/secrets/{name}", body={"value": "v"})
        assert put.status == 200, put.body
    events = await _all_pages(ecode_api, "audit", "events", user="admin")
    ids = [e["id"] for e in events]
    assert len(ids) >= 4 and ids == sorted(set(ids), reverse=True)
    whole = await ecode_api("GET", "audit", user="admin")
    assert [e["id"] for e in whole.body["events"]] == ids
    await _bad_paging_is_400(ecode_api, "audit", user="admin")


async def test_releases_and_deployments_come_in_pages_newest_first(ecode_api: Any) -> None:
    created = await ecode_api("POST", "projects", body={"name": "Shipped", "template": "flask-api"})
    assert created.status == 201, created.body
    pid = created.body["id"]
    numbers, deployments = [], []
    for _ in range(3):
        release = await ecode_api("POST", f"projects/{pid}/releases", body={})
        assert release.status == 201, release.body
        numbers.append(release.body["release"]["number"])
        deployments.append(release.body["id"])
    releases = await _all_pages(ecode_api, f"projects/{pid}/releases", "releases")
    assert [r["number"] for r in releases] == numbers[::-1]
    listed = await _all_pages(ecode_api, f"projects/{pid}/deployments", "deployments")
    assert [d["id"] for d in listed] == deployments[::-1]
    await _bad_paging_is_400(ecode_api, f"projects/{pid}/releases")
    # A release number is an INTEGER column (32 bits on PostgreSQL).
    past = await ecode_api("GET", f"projects/{pid}/releases?cursor={_b64([2**31])}")
    assert past.status == 400 and past.error_code == "invalid_input", past.body
    await _bad_paging_is_400(ecode_api, f"projects/{pid}/deployments")
    stopped = await ecode_api("DELETE", f"projects/{pid}/deployments")
    assert stopped.status == 200, stopped.body
