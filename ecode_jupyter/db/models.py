"""The ORM: every table of the suite except billing's (``billing/models.py``).

One ``Base`` with a naming convention so Alembic migrations get stable constraint names on
SQLite and PostgreSQL alike. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes; SQLite drops the zone, so put UTC back on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Role(enum.StrEnum):
    """A member's role in a project, weakest first."""

    viewer = "viewer"
    editor = "editor"
    owner = "owner"

    @property
    def rank(self) -> int:
        return {"viewer": 1, "editor": 2, "owner": 3}[self.value]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class User(Base):
    """A person as jupyter_server's identity names them (JupyterHub users unchanged)."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("owner", "slug", name="uq_projects_owner_slug"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(255), ForeignKey("users.username"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    template: Mapped[str | None] = mapped_column(String(64))
    prompt: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(128))
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Soft delete: restorable until purged after the configured number of days.
    deleted_at: Mapped[datetime | None] = mapped_column(index=True)

    members: Mapped[list[ProjectMember]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True
    )


class ProjectMember(Base):
    __tablename__ = "project_members"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.username"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    added_by: Mapped[str | None] = mapped_column(String(255))

    project: Mapped[Project] = relationship(back_populates="members")


class ProjectSecret(Base):
    """A project secret, encrypted at rest with Fernet; the plaintext is never stored."""

    __tablename__ = "project_secrets"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(255))


class AuditEvent(Base):
    """Who did what, when and from where. Append-only."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_project_ts", "project_id", "ts"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(32))
    remote_ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Run(Base):
    """One agent run of a project: its prompt, status, usage and cost."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[str] = mapped_column(String(255))
    prompt: Mapped[str] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    continued_from: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    steps: Mapped[int] = mapped_column(default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    # The run's own cap (max_credits when it was started or continued); None: only the
    # server's (c.EcodeApp.agent_max_cost_micros).
    max_cost_micros: Mapped[int | None] = mapped_column(BigInteger)
    # build (write and verify), plan (stop for the plan's approval first) or ask (read-only
    # tools, an answer): agent/modes.py
    mode: Mapped[str] = mapped_column(String(16), default="build", server_default="build")
    last_seq: Mapped[int] = mapped_column(default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApprovalPolicy(Base):
    """A project's approval rules (``projects/policy.py``): which tool calls run, wait for a
    person's approval or are refused. No row: every call runs, as before policies existed."""

    __tablename__ = "approval_policies"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    # [{"tool", "match", "action"}, ...] in order; the first rule that matches decides.
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(255))


class RunApproval(Base):
    """One question a run asked a person (a tool call under an ``ask`` rule, or a plan) and
    the answer. The run waits on the row; whoever decides updates it (any process)."""

    __tablename__ = "run_approvals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(String(32))
    # "tool" (a call the policy asks about) or "plan" (a plan-mode run's plan)
    kind: Mapped[str] = mapped_column(String(16))
    tool: Mapped[str | None] = mapped_column(String(64))
    arguments: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # pending, then allowed, denied, expired (nobody answered in time) or cancelled
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decision: Mapped[str | None] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]


class RunEvent(Base):
    """The progress feed: append-only, numbered per run from 1."""

    __tablename__ = "run_events"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RateLimitCounter(Base):
    """How many events of one kind a user had in one fixed window (``ratelimit.py``).

    Not a foreign key to users: counting must not wait on (or fail for) a users row. Rows of
    ended windows are deleted opportunistically by the limiter (``expires_at`` is indexed).
    """

    __tablename__ = "rate_limit_counters"

    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Part of the key, so a limit changed from per-minute to per-hour starts fresh counts.
    window_s: Mapped[int] = mapped_column(primary_key=True)
    # Epoch seconds, a multiple of window_s: integers compare the same on every database.
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    count: Mapped[int] = mapped_column(default=0)


class GpuSlot(Base):
    """A GPU (or MIG instance) of one host that kernels may lease (``kernels/gpus``).

    ``holders`` counts the open leases on it; a lease is taken with one conditional UPDATE
    (``holders < :most``), so two servers sharing the database cannot both take the last
    place. The CHECK is the backstop against a bug that would release twice.
    """

    __tablename__ = "gpu_slots"
    __table_args__ = (CheckConstraint("holders >= 0", name="holders_not_negative"),)

    # The machine whose devices these are: several servers may share one database.
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    holders: Mapped[int] = mapped_column(default=0)
    # False once the device is no longer configured or discovered: not leased any more.
    present: Mapped[bool] = mapped_column(default=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class GpuLease(Base):
    """One device held by one kernel, from its start until it is released. Rows stay as
    history (``ended_at``, ``end_reason``, what was billed)."""

    __tablename__ = "gpu_leases"
    __table_args__ = (Index("ix_gpu_leases_host_ended_at", "host", "ended_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # The leases of one kernel start share a group id (one credit hold covers them all).
    group_id: Mapped[str] = mapped_column(String(32), index=True)
    host: Mapped[str] = mapped_column(String(255))
    device_id: Mapped[str] = mapped_column(String(128))
    device_name: Mapped[str] = mapped_column(String(255))
    kernel_id: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str] = mapped_column(String(32), index=True)
    username: Mapped[str] = mapped_column(String(255))
    # The Jupyter server process holding it ("host:pid:start"), so a restarted server can
    # tell its predecessor's leases from a live neighbour's on the same host.
    holder: Mapped[str] = mapped_column(String(300))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(64))
    # The open credit hold of the current slice, released by a sweep if the server died.
    reservation_id: Mapped[str | None] = mapped_column(String(32))
    billed_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
