"""``/ecode/@owner/slug`` sends the browser to JupyterLab with the project to open."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from jupyter_server.utils import url_path_join
from tornado.httpclient import HTTPClientError

from ecode_jupyter.handlers import open_project


@pytest.fixture
def routed(jp_serverapp: Any, jp_base_url: str) -> None:
    """Route the handler on the test server even before the app lists the module."""
    handlers = [
        (url_path_join(jp_base_url, pattern), handler)
        for pattern, handler in open_project.default_handlers
    ]
    jp_serverapp.web_app.add_handlers(".*$", handlers)


async def test_redirects_to_lab_with_the_project(
    routed: None, jp_fetch: Any, jp_base_url: str
) -> None:
    reply = await jp_fetch("ecode", "@alice", "todo-api", follow_redirects=False, raise_error=False)
    assert reply.code == 302
    location = urlsplit(reply.headers["Location"])
    assert location.path == url_path_join(jp_base_url, "lab")
    assert parse_qs(location.query) == {"ecode": ["@alice/todo-api"]}


async def test_a_browser_that_is_not_logged_in_logs_in_first(routed: None, jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch(
            "ecode", "@alice", "todo-api", headers={"Authorization": ""}, follow_redirects=False
        )
    assert caught.value.code == 302
    assert caught.value.response is not None
    login = urlsplit(caught.value.response.headers["Location"])
    assert login.path.endswith("/login")
    assert unquote(parse_qs(login.query)["next"][0]).endswith("/ecode/@alice/todo-api")
