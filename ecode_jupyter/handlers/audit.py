"""The audit trail, for admins."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import EcodeHandler


class AuditHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.require_admin()
        before = self.get_query_argument("before", None)
        events = await self.ecode.audit.list_events(
            actor=self.get_query_argument("actor", None),
            project_id=self.get_query_argument("project", None),
            action=self.get_query_argument("action", None),
            before_id=self.query_int("before", 0, lo=1, hi=2**62) if before else None,
            limit=self.query_int("limit", 100, lo=1, hi=500),
        )
        self.finish_json({"events": events})


default_handlers = [(r"/api/ecode/audit", AuditHandler)]
