"""The OpenAPI description (handlers/openapi.yaml) is served, and true to the routes."""

from __future__ import annotations

import re
from typing import Any

from tornado import web

from ecode_jupyter.app import HANDLER_MODULES
from ecode_jupyter.handlers.openapi import openapi_document

METHODS = ("get", "post", "put", "patch", "delete")


def _template(pattern: str) -> str:
    """A route's regular expression as an OpenAPI path under /api/ecode."""
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
    path = path.replace("\\.", ".").removesuffix("/?")
    return path.removeprefix("/api/ecode")


def _routes() -> dict[str, set[str]]:
    """Every /api/ecode/ route of a server on its own, with the methods its handler has."""
    routes: dict[str, set[str]] = {}
    for module in HANDLER_MODULES:
        for rule in module.default_handlers:
            pattern, handler = rule[0], rule[1]
            if not pattern.startswith("/api/ecode/"):
                continue
            methods = {
                m for m in METHODS if getattr(handler, m) is not getattr(web.RequestHandler, m)
            }
            routes.setdefault(_template(pattern), set()).update(methods)
    return routes


def test_the_description_names_every_route_and_method_and_no_other() -> None:
    described = {
        path: {m for m in item if m in METHODS}
        for path, item in openapi_document()["paths"].items()
    }
    routes = _routes()
    # A new route needs its description in ecode_jupyter/handlers/openapi.yaml (it is the
    # API's reference, and the fuzzer tests only what is described there).
    undescribed = sorted(set(routes) - set(described))
    stale = sorted(set(described) - set(routes))
    assert not undescribed, f"routes missing from openapi.yaml: {undescribed}"
    assert not stale, f"openapi.yaml describes routes that do not exist: {stale}"
    for path, methods in routes.items():
        assert described[path] == methods, (
            f"{path}: handler {methods}, openapi.yaml {described[path]}"
        )


def test_every_operation_documents_its_errors_in_the_one_shape() -> None:
    document = openapi_document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            assert operation.get("summary"), (method, path)
            assert "401" in operation["responses"], (method, path)
    error = document["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]


async def test_openapi_json_is_served_to_users_only(ecode_api: Any, jp_base_url: str) -> None:
    resp = await ecode_api("GET", "openapi.json", user="bob")
    assert resp.status == 200
    assert resp.body["openapi"].startswith("3.")
    # The paths are relative to the server's own base URL, so clients and tools can call them.
    assert resp.body["servers"] == [{"url": f"{jp_base_url}api/ecode"}]
    assert "/projects/{project_id}/runs" in resp.body["paths"]
    anonymous = await ecode_api("GET", "openapi.json", user=None)
    assert anonymous.status == 401 and anonymous.error_code == "not_authenticated"


async def test_a_method_a_route_lacks_is_405_naming_those_it_has(ecode_api: Any) -> None:
    for method, path, allowed in [
        ("PUT", "projects", "GET, POST"),
        ("DELETE", "templates", "GET"),
        ("TRACE", "billing/budgets", "PUT"),
    ]:
        resp = await ecode_api(method, path)
        assert resp.status == 405, (method, path, resp.body)
        assert resp.error_code == "method_not_allowed"
        assert resp.headers.get("Allow") == allowed, (method, path)
