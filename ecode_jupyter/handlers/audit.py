"""The audit trail, for admins."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..pages import decode_cursor, encode_cursor
from .base import EcodeHandler


class AuditHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.require_admin()
        before = self.get_query_argument("before", None)
        before_id = self.query_int("before", 0, lo=1, hi=2**62) if before else None
        cursor = self.get_query_argument("cursor", None)
        if cursor:
            # The same keyset as `before` (ids only go down), as the other lists spell it.
            (before_id,) = decode_cursor(cursor, int)
        limit = self.query_int("limit", 100, lo=1, hi=500)
        events = await self.ecode.audit.list_events(
            actor=self.get_query_argument("actor", None),
            project_id=self.get_query_argument("project", None),
            action=self.get_query_argument("action", None),
            before_id=before_id,
            limit=limit,
        )
        # A full page may be the last one: its cursor then leads to an empty page.
        next_cursor = encode_cursor(events[-1]["id"]) if len(events) == limit else None
        self.finish_json({"events": events, "next_cursor": next_cursor})


default_handlers = [(r"/api/ecode/audit", AuditHandler)]
