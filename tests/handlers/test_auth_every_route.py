"""Every registered /api/ecode/ route refuses unauthenticated calls — new ones included."""

from __future__ import annotations

import re
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.routing import PathMatches

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def ecode_route_patterns(serverapp: Any) -> list[str]:
    routes = []
    for rule in serverapp.web_app.default_router.rules:
        for sub in getattr(rule.target, "rules", []):
            matcher = sub.matcher
            if isinstance(matcher, PathMatches) and "api/ecode" in matcher.regex.pattern:
                routes.append(matcher.regex.pattern)
    return routes


def sample_path(pattern: str) -> str:
    path = pattern.rstrip("$")
    path = re.sub(r"\(\?P<[^>]+>[^)]*\)", "x1", path)
    path = re.sub(r"\([^)]*\)", "x1", path)
    return path.replace("\\", "")


async def test_every_ecode_route_requires_authentication(
    jp_serverapp: Any, http_server_client: Any, jp_http_port: int
) -> None:
    routes = ecode_route_patterns(jp_serverapp)
    # The foundation's own routes must be there, so a broken lookup cannot pass vacuously.
    patterns = " ".join(routes)
    for expected in ("api/ecode/projects", "api/ecode/audit", "by-slug", "secrets", "members"):
        assert expected in patterns
    client = AsyncHTTPClient()
    checked = 0
    for pattern in routes:
        path = sample_path(pattern)
        # Every method, implemented or not: prepare() must refuse before a 405 could answer.
        for method in METHODS:
            body = b"{}" if method in ("POST", "PUT", "PATCH") else None
            for headers in ({}, {"Authorization": "token wrong-token"}):
                req = HTTPRequest(
                    f"http://127.0.0.1:{jp_http_port}{path}",
                    method=method,
                    body=body,
                    headers=headers,
                    allow_nonstandard_methods=True,
                    follow_redirects=False,
                )
                resp = await client.fetch(req, raise_error=False)
                assert resp.code in (401, 403), (method, path, resp.code, resp.body[:200])
                checked += 1
    assert checked >= 20
