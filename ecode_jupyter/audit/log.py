"""Audit records are written in the same transaction as the change they describe."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import Database
from ..db.models import AuditEvent
from ..exceptions import InvalidInput

log = logging.getLogger(__name__)

MAX_AUDIT_PAGE = 500


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
    project_id: str | None = None,
    remote_ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add one audit row to ``session``'s transaction. Never pass secret values in details."""
    session.add(
        AuditEvent(
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            project_id=project_id,
            remote_ip=remote_ip,
            details=details or {},
        )
    )


def audit_to_json(ev: AuditEvent) -> dict[str, Any]:
    return {
        "id": ev.id,
        "ts": ev.ts.isoformat(),
        "actor": ev.actor,
        "action": ev.action,
        "target_type": ev.target_type,
        "target_id": ev.target_id,
        "project_id": ev.project_id,
        "remote_ip": ev.remote_ip,
        "details": ev.details,
    }


class AuditLog:
    """Reads of the audit trail (writes happen inside each manager's transaction)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_events(
        self,
        *,
        actor: str | None = None,
        project_id: str | None = None,
        action: str | None = None,
        before_id: int | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            msg = f"limit must be between 1 and {MAX_AUDIT_PAGE}"
            raise InvalidInput(msg)

        def query(session: Session) -> list[dict[str, Any]]:
            stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
            if actor:
                stmt = stmt.where(AuditEvent.actor == actor)
            if project_id:
                stmt = stmt.where(AuditEvent.project_id == project_id)
            if action:
                stmt = stmt.where(AuditEvent.action == action)
            if before_id is not None:
                stmt = stmt.where(AuditEvent.id < before_id)
            if since is not None:
                stmt = stmt.where(AuditEvent.ts >= since)
            return [audit_to_json(ev) for ev in session.scalars(stmt)]

        return await self.db.run(query)
