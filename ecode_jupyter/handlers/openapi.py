"""``GET /api/ecode/openapi.json``: the OpenAPI 3 description of this REST API.

The description is written by hand in ``openapi.yaml`` beside this module (it documents the
API too); ``tests/handlers/test_openapi.py`` holds it to the registered routes, so a route
added without its description fails there.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib.resources import files
from typing import Any

import yaml
from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import EcodeHandler


@cache
def openapi_document() -> dict[str, Any]:
    """The parsed description (read once per process; callers get it as it is on disk)."""
    text = files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


class OpenApiHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        document = copy.deepcopy(openapi_document())
        # The API lives under the server's base URL (on a hub: /services/ecode/, /user/x/…).
        document["servers"] = [{"url": f"{self.base_url}api/ecode"}]
        self.finish_json(document)


default_handlers = [(r"/api/ecode/openapi\.json", OpenApiHandler)]
