"""Malformed input is a 400 with the JSON error shape, never a 500 (issue 17, 8)."""

from __future__ import annotations

from typing import Any

import pytest

DEEP = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
SURROGATE = b'{"name": "x\\ud800y"}'


async def _project(ecode_api: Any) -> str:
    created = await ecode_api("POST", "projects", body={"name": "Inputs"})
    assert created.status == 201, created.body
    return str(created.body["id"])


@pytest.mark.parametrize(
    ("method", "path", "raw", "says"),
    [
        ("POST", "projects", DEEP, "nested"),
        ("POST", "projects", SURROGATE, "surrogate"),
        ("POST", "projects", b'{"name": "x", "description": "\\udfff"}', "surrogate"),
        ("POST", "projects", b'{"name": "x", "\\ud800": 1}', "surrogate"),
        (
            "POST",
            "billing/grants",
            b'{"user": "bob", "amount_micros": 18446744073709551616}',
            "range",
        ),
        ("POST", "billing/grants", b'{"user": "bob", "credits": 18446744073709551616}', "range"),
        ("POST", "billing/grants", b'{"user": "bob", "credits": "1e30"}', "credits"),
    ],
)
async def test_malformed_bodies_are_400(
    ecode_api: Any, method: str, path: str, raw: bytes, says: str
) -> None:
    resp = await ecode_api(method, path, user="admin", raw=raw)
    assert resp.status == 400, resp.body
    assert resp.error_code == "invalid_input" and says in resp.body["error"]["message"]


async def test_malformed_project_fields_and_secrets_are_400(ecode_api: Any) -> None:
    pid = await _project(ecode_api)
    for method, path, raw in [
        ("PATCH", f"projects/{pid}", b'{"description": "\\ud800"}'),
        ("POST", f"projects/{pid}/runs", b'{"prompt": "build \\ud800 it"}'),
        ("PUT", f"projects/{pid}/secrets/KEY", b'{"value": "\\ud800\\udc00\\ud800"}'),
        ("PATCH", f"projects/{pid}", b'{"budget_micros": 18446744073709551616}'),
    ]:
        resp = await ecode_api(method, path, raw=raw)
        assert resp.status == 400, (path, resp.body)
        assert resp.error_code == "invalid_input"


async def test_events_after_a_huge_number_is_400(ecode_api: Any) -> None:
    pid = await _project(ecode_api)
    run = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "a cli script"})
    assert run.status == 201, run.body
    # 2**31 and 2**63 - 2: past run_events.seq, an INTEGER (32 bits on PostgreSQL, where the
    # fuzzer found them answered 500).
    for after in ("9" * 400, str(2**63), str(2**63 - 2), str(2**31), "-1", "x"):
        resp = await ecode_api("GET", f"runs/{run.body['id']}/events?after={after}")
        assert resp.status == 400, (after, resp.body)
        assert resp.error_code == "invalid_input"


async def test_nul_characters_are_400_in_bodies_paths_and_queries(ecode_api: Any) -> None:
    # PostgreSQL's text columns refuse NUL: each of these was a 500 there (SQLite stored it).
    pid = await _project(ecode_api)
    for method, path, body, user in [
        ("PATCH", f"projects/{pid}", {"description": "a\x00b"}, "alice"),
        ("POST", "billing/grants", {"user": "bo\x00b", "credits": "1"}, "admin"),
        (
            "PUT",
            f"projects/{pid}/policy",
            {"rules": [{"tool": "x", "action": "ask", "match": "\x00"}]},
            "alice",
        ),
        ("GET", "by-slug/@al%00ice/inputs", None, "alice"),
        ("GET", "audit?actor=a%00b", None, "admin"),
    ]:
        resp = await ecode_api(method, path, body=body, user=user)
        assert resp.status == 400, (method, path, resp.body)
        assert resp.error_code == "invalid_input" and "NUL" in resp.body["error"]["message"]
