"""The keyed proxy path's shortcuts keep its checks: the Host check, no invented ETag."""

from __future__ import annotations

import json
from typing import Any

from .test_preview_api import _preview, _project


async def test_keyed_requests_keep_the_host_check_and_add_no_etag(
    ecode_api: Any, app_fetch: Any, jp_serverapp: Any
) -> None:
    jp_serverapp.web_app.settings["allow_remote_access"] = False
    project = await _project(ecode_api, "Fast", template="flask-api")
    dep = await _preview(ecode_api, project["id"])
    # A local Host is accepted (and remembered); a foreign one is refused every time after it,
    # so a DNS-rebinding page cannot use a key it learnt.
    for _ in range(2):
        ok = await app_fetch(dep["url"] + "health")
        assert ok.code == 200 and json.loads(ok.body) == {"status": "ok"}
        # The proxy does not invent a validator the app never sent.
        assert "Etag" not in ok.headers
        refused = await app_fetch(dep["url"] + "health", headers={"Host": "evil.example"})
        assert refused.code == 403
