"""Project members and their roles (owner, editor, viewer)."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..exceptions import InvalidInput
from .base import EcodeHandler
from .projects import ID


class MembersHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        # Oldest membership first, in pages (a project shared with a whole school is large).
        members, next_cursor = await self.ecode.projects.list_members_page(
            self.ecode_user,
            project_id,
            limit=self.query_int("limit", 200, lo=1, hi=1000),
            cursor=self.get_query_argument("cursor", None),
        )
        self.finish_json({"members": members, "next_cursor": next_cursor})


class MemberHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def put(self, project_id: str, member: str) -> None:
        body = self.json_body()
        if set(body) != {"role"}:
            msg = 'body must be {"role": "owner" | "editor" | "viewer"}'
            raise InvalidInput(msg)
        row = await self.ecode.projects.set_member(
            self.ecode_user, project_id, member, body["role"]
        )
        self.finish_json(row)

    @web.authenticated
    @authorized
    async def delete(self, project_id: str, member: str) -> None:
        await self.ecode.projects.remove_member(self.ecode_user, project_id, member)
        self.set_status(204)
        self.finish()


default_handlers = [
    (rf"/api/ecode/projects/{ID}/members", MembersHandler),
    (rf"/api/ecode/projects/{ID}/members/(?P<member>[^/]+)", MemberHandler),
]
