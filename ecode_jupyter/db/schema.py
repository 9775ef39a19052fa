"""Schema versions: upgrade, downgrade, and the start-up check.

Migrations are Alembic scripts shipped in ``ecode_jupyter/db/migrations``. A SQLite database is
brought to head automatically (its file backed up first); a shared PostgreSQL database is
upgraded only by ``jupyter ecode db upgrade``, and a server on a stale schema refuses to start.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from ..exceptions import SchemaOutOfDate
from .session import Database, redact_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's env.py uses this engine instead of building its own from a URL string, so a
    # password never passes through Alembic's ini interpolation.
    cfg.attributes["engine"] = db.engine
    return cfg


def head_revision(db: Database) -> str | None:
    return ScriptDirectory.from_config(alembic_config(db)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    command.upgrade(alembic_config(db), revision)


def downgrade(db: Database, revision: str) -> None:
    command.downgrade(alembic_config(db), revision)


def backup_sqlite(db: Database) -> Path | None:
    """Copy the SQLite file aside before a migration touches it; None for a new file."""
    name = db.url.database
    if not name or name == ":memory:":
        return None
    path = Path(name)
    if not path.exists() or path.stat().st_size == 0:
        return None
    with contextlib.closing(sqlite3.connect(path)) as conn:
        # Opening a new file in WAL mode writes a header: a file without tables holds nothing.
        if (
            conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            == 0
        ):
            return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    # SQLite's online backup copies a consistent snapshot, WAL contents included.
    with (
        contextlib.closing(sqlite3.connect(path)) as src,
        contextlib.closing(sqlite3.connect(backup)) as dst,
    ):
        src.backup(dst)
    return backup


def ensure_schema(db: Database, *, auto_upgrade: bool | None = None) -> None:
    """Bring the schema to head, or refuse to start when that is not ours to do.

    ``auto_upgrade`` None means: yes for SQLite, no for anything shared.
    """
    if auto_upgrade is None:
        auto_upgrade = db.is_sqlite
    current = current_revision(db.engine)
    head = head_revision(db)
    if current == head:
        return
    if not auto_upgrade:
        msg = (
            f"The ecode database at {redact_url(db.url)} is at schema {current or 'empty'}, "
            f"this version needs {head}. Run `jupyter ecode db upgrade` and start again."
        )
        raise SchemaOutOfDate(msg)
    if db.is_sqlite:
        backup = backup_sqlite(db)
        if backup is not None:
            log.info("backed up the ecode database to %s before upgrading", backup)
    log.info("upgrading the ecode database from %s to %s", current or "empty", head)
    upgrade(db)
