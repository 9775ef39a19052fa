"""``/ecode/@owner/slug``: a project's address opens it in JupyterLab.

The handler only redirects, to ``{base_url}lab?ecode=@owner/slug``; the lab extension reads
the parameter, resolves the slug (``GET api/ecode/by-slug/@owner/slug``, which checks that the
caller may see the project) and opens the project's feed and its four-tab view. Nothing is
looked up here, so the redirect tells a stranger nothing about which projects exist. A
browser that is not logged in goes through Jupyter's login first and comes back here.
"""

from __future__ import annotations

from urllib.parse import urlencode

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .base import AUTH_RESOURCE

#: the query parameter the lab extension opens (labextension/src/index.ts, OPEN_PARAM)
OPEN_PARAM = "ecode"
SLUG = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"


class OpenProjectHandler(JupyterHandler):
    auth_resource = AUTH_RESOURCE

    @web.authenticated
    def get(self, owner: str, slug: str) -> None:
        query = urlencode({OPEN_PARAM: f"@{owner}/{slug}"})
        self.redirect(f"{url_path_join(self.base_url, 'lab')}?{query}")


# Browsers send the "@" as is; some clients escape it, and routes match the raw path.
default_handlers = [
    (rf"/ecode/(?:@|%40)(?P<owner>[^/]+)/(?P<slug>{SLUG})/?", OpenProjectHandler),
]
