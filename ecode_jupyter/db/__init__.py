"""The data layer: SQLAlchemy 2 models, sessions, and Alembic migrations shipped in the package."""

from .session import Database

__all__ = ["Database"]
