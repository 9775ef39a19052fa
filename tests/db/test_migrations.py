"""Migrations: empty → head → base, the start-up check, and the SQLite backup."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from ecode_jupyter.db import Database
from ecode_jupyter.db.metadata import metadata
from ecode_jupyter.db.schema import (
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    upgrade,
)
from ecode_jupyter.exceptions import SchemaOutOfDate


def test_upgrade_empty_database_to_head_and_back_down(
    ecode_postgres_url: str | None, tmp_path: Path
) -> None:
    if ecode_postgres_url:
        # The session database is shared by other tests: use a scratch schema-less copy.
        pytest.skip("run on SQLite; the PostgreSQL variant is test_migrations_postgres")
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    try:
        assert current_revision(db.engine) is None
        upgrade(db)
        assert current_revision(db.engine) == head_revision(db)
        tables = set(inspect(db.engine).get_table_names())
        assert {t.name for t in metadata.sorted_tables} <= tables
        downgrade(db, "base")
        assert current_revision(db.engine) is None
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    finally:
        db.dispose()


def test_migrations_postgres(ecode_postgres_url: str | None) -> None:
    if not ecode_postgres_url:
        pytest.skip("set ECODE_TEST_DATABASE_URL to run against PostgreSQL")
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ecode_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(ecode_postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db = Database(make_url(ecode_postgres_url).set(database=name).render_as_string(False))
    try:
        upgrade(db)
        assert current_revision(db.engine) == head_revision(db)
        assert {t.name for t in metadata.sorted_tables} <= set(inspect(db.engine).get_table_names())
        downgrade(db, "base")
        assert current_revision(db.engine) is None
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_models_match_migrations(tmp_path: Path) -> None:
    """Autogenerate finds nothing to do at head: the ORM and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    db = Database(f"sqlite:///{tmp_path / 'c.sqlite'}")
    try:
        upgrade(db)
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        db.dispose()


def test_stale_database_refuses_to_start_without_upgrade(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    try:
        with pytest.raises(SchemaOutOfDate, match="jupyter ecode db upgrade"):
            ensure_schema(db, auto_upgrade=False)
        assert current_revision(db.engine) is None
    finally:
        db.dispose()


def test_sqlite_is_backed_up_then_upgraded_keeping_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = Database(f"sqlite:///{path}")
    try:
        # The oldest revision that has the users table: every later one keeps it.
        upgrade(db, "0001")
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO users (username, display_name, created_at, last_seen_at) "
                "VALUES ('kept', 'Kept', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        if head_revision(db) == "0001":
            pytest.skip("needs a revision after 0001 to migrate to")
        ensure_schema(db)  # SQLite: automatic
        assert current_revision(db.engine) == head_revision(db)
        with db.engine.connect() as conn:
            names = [r[0] for r in conn.exec_driver_sql("SELECT username FROM users")]
        assert names == ["kept"]
    finally:
        db.dispose()
    backups = list(tmp_path.glob("old.sqlite.*.bak"))
    assert len(backups) == 1
    old = Database(f"sqlite:///{backups[0]}")
    try:
        with old.engine.connect() as conn:
            assert [r[0] for r in conn.exec_driver_sql("SELECT username FROM users")] == ["kept"]
    finally:
        old.dispose()
