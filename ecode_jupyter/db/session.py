"""Engine and sessions, and the rule that the server's event loop never waits on the database.

Managers call ``await db.run(fn)``: ``fn(session)`` runs in a worker thread inside one
transaction (committed on return, rolled back on error). SQLite gets WAL and ``BEGIN
IMMEDIATE`` so concurrent writers queue on the busy timeout instead of failing with
"database is locked" when a reader upgrades to a writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

T = TypeVar("T")


def redact_url(url: str | URL) -> str:
    """The URL with its password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


class Database:
    """One engine, a session factory and a thread pool for blocking DB calls."""

    def __init__(self, url: str, *, pool_size: int = 8, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="ecode-db")

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: commit on success, roll back on any error."""
        with self.sessionmaker() as session, session.begin():
            yield session

    def call(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in a transaction on this thread (CLI, tests, worker threads)."""
        with self.session() as session:
            return fn(session)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in a transaction on a worker thread, so the event loop stays free."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.call, fn)

    def dispose(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's own is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
