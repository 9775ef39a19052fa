"""Tables of the deploy concern: releases (immutable snapshots) and deployments (app runs).

A deployment row is the history of one app run; whether it is running right now is known
only to the server that runs it (the DeployManager's memory), so rows left ``running`` by a
server that stopped are marked ``stopped`` at the next start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db.models import Base, new_id, utcnow


class Release(Base):
    """A content-addressed snapshot of a project's files, with how to run it."""

    __tablename__ = "deploy_releases"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_deploy_releases_number"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    # 1, 2, 3… per project: what people call "release 3".
    number: Mapped[int]
    manifest_digest: Mapped[str] = mapped_column(String(64))
    file_count: Mapped[int]
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Names of the secrets the release runs with; values stay in the secrets store.
    env_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    # "pending" until its first health check, then "ready" or "failed".
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    live_at: Mapped[datetime | None]


class Deployment(Base):
    """One run of a project's app: a preview of the workspace or a release."""

    __tablename__ = "deploy_deployments"
    __table_args__ = (Index("ix_deploy_deployments_project_created", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    release_id: Mapped[str | None] = mapped_column(
        ForeignKey("deploy_releases.id", ondelete="CASCADE"), index=True
    )
    # starting, running, restarting, failed, stopped
    status: Mapped[str] = mapped_column(String(16), default="starting", index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    restarts: Mapped[int] = mapped_column(default=0)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]
    # Which server ran it (host:port/base_url): a restart tidies only its own rows.
    host: Mapped[str] = mapped_column(String(255), default="")
    # Set when the server (not a person) stopped a live release: the next start resumes it.
    resume: Mapped[bool] = mapped_column(default=False)
