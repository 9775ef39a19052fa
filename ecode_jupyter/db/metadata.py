"""Every table of the suite in one MetaData, for Alembic and for tests."""

from __future__ import annotations

from .models import Base

metadata = Base.metadata

__all__ = ["metadata"]
