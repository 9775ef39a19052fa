"""Shared pieces of the billing tests: a price table with round numbers, a movable clock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ecode_jupyter.billing import BillingManager, PriceTable
from ecode_jupyter.db import Database
from ecode_jupyter.db.models import Project, User, new_id
from ecode_jupyter.identity import EcodeUser

# 1 micro-credit per input token, 2 per output token: costs are easy to check by hand.
TEST_MODEL = "test-model"
TEST_PRICES = {
    TEST_MODEL: {
        "input": 1_000_000,
        "output": 2_000_000,
        "cache_write": 1_250_000,
        "cache_read": 100_000,
    }
}
ADMIN = EcodeUser("root", "Root", True, "127.0.0.1")


class Clock:
    """A clock the test moves by hand (months turn, reservations expire)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 14, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def unique_name(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_project(db: Database, owner: str, name: str = "billing test") -> str:
    """A project row (and its owner's user row) for budgets and usage by project."""
    project_id = new_id()

    def add(session: object) -> None:
        from sqlalchemy.orm import Session

        assert isinstance(session, Session)
        if session.get(User, owner) is None:
            session.add(User(username=owner, display_name=owner))
            session.flush()
        session.add(Project(id=project_id, owner=owner, name=name, slug=project_id[:20]))

    db.call(add)
    return project_id


@pytest.fixture
def billing_clock() -> Clock:
    return Clock()


@pytest.fixture
def billing(ecode_db: Database, billing_clock: Clock) -> Iterator[BillingManager]:
    yield BillingManager(
        ecode_db,
        PriceTable(TEST_PRICES),
        monthly_allowance_micros=0,
        reservation_ttl_s=600,
        clock=billing_clock,
    )
