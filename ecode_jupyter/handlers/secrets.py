"""Project secrets: names can be listed, values only written (never returned)."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..exceptions import InvalidInput
from .base import EcodeHandler
from .projects import ID


class SecretsHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        names, next_cursor = await self.ecode.secrets.list_secrets_page(
            self.ecode_user,
            project_id,
            limit=self.query_int("limit", 200, lo=1, hi=1000),
            cursor=self.get_query_argument("cursor", None),
        )
        self.finish_json({"secrets": names, "next_cursor": next_cursor})


class SecretHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def put(self, project_id: str, name: str) -> None:
        body = self.json_body()
        if set(body) != {"value"}:
            msg = 'body must be {"value": "..."}'
            raise InvalidInput(msg)
        row = await self.ecode.secrets.put_secret(self.ecode_user, project_id, name, body["value"])
        self.finish_json(row)

    @web.authenticated
    @authorized
    async def delete(self, project_id: str, name: str) -> None:
        await self.ecode.secrets.delete_secret(self.ecode_user, project_id, name)
        self.set_status(204)
        self.finish()


default_handlers = [
    (rf"/api/ecode/projects/{ID}/secrets", SecretsHandler),
    (rf"/api/ecode/projects/{ID}/secrets/(?P<name>[^/]+)", SecretHandler),
]
