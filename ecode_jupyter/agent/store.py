"""Runs in the database: create, read, list, account usage, and find the orphaned ones.

A run's status goes ``queued → running → completed | failed | cancelled | interrupted``; the
last four are final. While a run is live its ``summary`` names the process running it and when
that process last said it was alive (``summary["runner"]``), so a server that restarts can tell
its own orphaned runs — and anyone can tell a run whose server died — from runs that another
server of the same deployment is still running.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from ..agent.providers.base import Usage
from ..agent.providers.offline import REASON_CANNOT_CHANGE
from ..billing.prices import format_credits
from ..db.models import Project, Run, utcnow
from ..exceptions import NotFound

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"

ACTIVE_STATUSES = frozenset({QUEUED, RUNNING})
FINAL_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED, INTERRUPTED})
#: a run in one of these may be continued by a new run
CONTINUABLE_STATUSES = frozenset({FAILED, CANCELLED, INTERRUPTED})


def run_to_json(run: Run) -> dict[str, Any]:
    summary = {k: v for k, v in (run.summary or {}).items() if k != "runner"}
    return {
        "id": run.id,
        "project_id": run.project_id,
        "created_by": run.created_by,
        "prompt": run.prompt,
        "provider": run.provider,
        "model": run.model,
        "status": run.status,
        "reason": run.reason,
        "continued_from": run.continued_from,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "steps": run.steps,
        "usage": {
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cache_read_tokens": run.cache_read_tokens,
            "cache_write_tokens": run.cache_write_tokens,
        },
        "cost_micros": run.cost_micros,
        # The run's own cap, a decimal string like every credit amount (None: no cap of its
        # own, only the server's).
        "max_credits": format_credits(run.max_cost_micros)
        if run.max_cost_micros is not None
        else None,
        "mode": run.mode,
        "last_seq": run.last_seq,
        "summary": summary,
        "events_url": f"api/ecode/runs/{run.id}/events",
    }


@dataclass(frozen=True)
class RunRef:
    """What the agent needs to know about a run to (re)start it."""

    id: str
    project_id: str
    created_by: str
    prompt: str
    provider: str
    model: str
    status: str
    reason: str | None
    continued_from: str | None
    max_cost_micros: int | None = None
    mode: str = "build"


def _ref(run: Run) -> RunRef:
    return RunRef(
        run.id,
        run.project_id,
        run.created_by,
        run.prompt,
        run.provider,
        run.model,
        run.status,
        run.reason,
        run.continued_from,
        run.max_cost_micros,
        run.mode or "build",
    )


def get_run_row(session: Session, run_id: Any) -> Run:
    run = session.get(Run, run_id) if isinstance(run_id, str) and run_id.isalnum() else None
    if run is None:
        msg = "no such run"
        raise NotFound(msg)
    return run


def create_run(
    session: Session,
    *,
    project_id: str,
    user: str,
    prompt: str,
    provider: str,
    model: str,
    runner: str,
    continued_from: str | None = None,
    max_cost_micros: int | None = None,
    mode: str = "build",
) -> Run:
    run = Run(
        project_id=project_id,
        created_by=user,
        prompt=prompt,
        provider=provider,
        model=model,
        status=QUEUED,
        continued_from=continued_from,
        max_cost_micros=max_cost_micros,
        mode=mode,
        summary={"runner": {"id": runner, "heartbeat": utcnow().isoformat()}},
    )
    session.add(run)
    # The project's "last changed" moves with its runs, so lists sort by activity.
    project = session.get(Project, project_id)
    if project is not None:
        project.updated_at = utcnow()
    session.flush()
    return run


def active_run_of(session: Session, project_id: str) -> Run | None:
    return session.scalar(
        select(Run)
        .where(Run.project_id == project_id, Run.status.in_(ACTIVE_STATUSES))
        .order_by(Run.created_at.desc())
        .limit(1)
    )


def list_runs(session: Session, project_id: str, limit: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Run).where(Run.project_id == project_id).order_by(Run.created_at.desc()).limit(limit)
    )
    return [run_to_json(r) for r in rows]


def list_runs_page(
    session: Session, project_id: str, limit: int, after: tuple[datetime, str] | None
) -> tuple[list[dict[str, Any]], tuple[datetime, str] | None]:
    """Newest first, after the run whose (created_at, id) is ``after``; and the key of this
    page's last run when more follow."""
    stmt = select(Run).where(Run.project_id == project_id)
    if after is not None:
        when, run_id = after
        stmt = stmt.where(or_(Run.created_at < when, and_(Run.created_at == when, Run.id < run_id)))
    stmt = stmt.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    page = rows[:limit]
    more = len(rows) > limit and bool(page)
    return [run_to_json(r) for r in page], (page[-1].created_at, page[-1].id) if more else None


def count_runs(session: Session, project_id: str) -> int:
    return int(
        session.scalar(select(func.count()).select_from(Run).where(Run.project_id == project_id))
        or 0
    )


def asks_for_a_change(session: Session, run: RunRef) -> bool:
    """Whether a run asks a built project for a change: a new prompt on a project with a
    completed run, or the continuation of a run the offline provider refused as one (else
    "Continue run" would rebuild the template and end "completed" with the change not made).
    """
    if run.continued_from is not None:
        previous = session.get(Run, run.continued_from)
        return previous is not None and previous.reason == REASON_CANNOT_CHANGE
    return has_completed_run(session, run.project_id, other_than=run.id)


def has_completed_run(session: Session, project_id: str, *, other_than: str) -> bool:
    """Whether a run of the project other than ``other_than`` completed (it was built)."""
    found = session.scalar(
        select(Run.id)
        .where(Run.project_id == project_id, Run.status == COMPLETED, Run.id != other_than)
        .limit(1)
    )
    return found is not None


def usage_changes(usage: Usage, cost_micros: int) -> dict[str, Any]:
    """Run column updates that add one model call's usage and cost (atomic increments)."""
    return {
        "input_tokens": Run.input_tokens + usage.input_tokens,
        "output_tokens": Run.output_tokens + usage.output_tokens,
        "cache_read_tokens": Run.cache_read_tokens + usage.cache_read_tokens,
        "cache_write_tokens": Run.cache_write_tokens + usage.cache_write_tokens,
        "cost_micros": Run.cost_micros + cost_micros,
    }


def add_usage(session: Session, run_id: str, usage: Usage, cost_micros: int) -> None:
    """Add one model call's usage and cost to the run's totals."""
    session.execute(update(Run).where(Run.id == run_id).values(**usage_changes(usage, cost_micros)))


def heartbeat(session: Session, run_ids: list[str], runner: str) -> None:
    now = utcnow().isoformat()
    for run in session.scalars(select(Run).where(Run.id.in_(run_ids))):
        if run.status in ACTIVE_STATUSES:
            run.summary = {**(run.summary or {}), "runner": {"id": runner, "heartbeat": now}}


def orphaned_runs(
    session: Session, runner: str, stale_after: timedelta, *, own_only_fresh: bool
) -> list[RunRef]:
    """Active runs nobody is running any more.

    A run is orphaned when its runner is ``runner`` (this server, restarted) or when its
    runner's heartbeat is older than ``stale_after`` (that server died). With
    ``own_only_fresh`` (the periodic sweep of a live server) this server's own runs are left
    alone: the caller knows which of them it is running.
    """
    now = utcnow()
    found: list[RunRef] = []
    for run in session.scalars(select(Run).where(Run.status.in_(ACTIVE_STATUSES))):
        info = (run.summary or {}).get("runner") or {}
        beat = _parse_time(info.get("heartbeat"))
        stale = beat is None or now - beat > stale_after
        mine = info.get("id") == runner
        if stale or (mine and not own_only_fresh):
            found.append(_ref(run))
    return found


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def run_ref(session: Session, run_id: str) -> RunRef:
    return _ref(get_run_row(session, run_id))
