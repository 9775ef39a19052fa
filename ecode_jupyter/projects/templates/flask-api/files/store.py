"""Todo storage: in memory by default, or SQLite when DATABASE_URL says so.

Both stores have the same methods, so the routes in app.py do not care which one is in use.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass
class Todo:
    id: int
    title: str
    done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TodoStore(Protocol):
    def list(self, done: bool | None = None) -> list[Todo]: ...
    def get(self, todo_id: int) -> Todo | None: ...
    def create(self, title: str, done: bool = False) -> Todo: ...
    def update(self, todo_id: int, changes: dict[str, Any]) -> Todo | None: ...
    def delete(self, todo_id: int) -> bool: ...


class MemoryStore:
    """Todos in a dict; a lock keeps ids unique when the server handles requests in threads."""

    def __init__(self) -> None:
        self._todos: dict[int, Todo] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    def list(self, done: bool | None = None) -> list[Todo]:
        with self._lock:
            todos = list(self._todos.values())
        return [t for t in todos if done is None or t.done == done]

    def get(self, todo_id: int) -> Todo | None:
        with self._lock:
            todo = self._todos.get(todo_id)
            return None if todo is None else Todo(**asdict(todo))

    def create(self, title: str, done: bool = False) -> Todo:
        with self._lock:
            todo = Todo(id=self._next_id, title=title, done=done)
            self._todos[todo.id] = todo
            self._next_id += 1
            return Todo(**asdict(todo))

    def update(self, todo_id: int, changes: dict[str, Any]) -> Todo | None:
        with self._lock:
            todo = self._todos.get(todo_id)
            if todo is None:
                return None
            for field, value in changes.items():
                setattr(todo, field, value)
            return Todo(**asdict(todo))

    def delete(self, todo_id: int) -> bool:
        with self._lock:
            return self._todos.pop(todo_id, None) is not None


class SqliteStore:
    """Todos in a SQLite file; one short-lived connection per call keeps threads apart."""

    def __init__(self, path: str) -> None:
        self._path = path
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS todos ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " title TEXT NOT NULL,"
                " done INTEGER NOT NULL DEFAULT 0)"
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path)
        db.row_factory = sqlite3.Row
        return db

    @staticmethod
    def _todo(row: sqlite3.Row) -> Todo:
        return Todo(id=row["id"], title=row["title"], done=bool(row["done"]))

    def list(self, done: bool | None = None) -> list[Todo]:
        with self._connect() as db:
            if done is None:
                rows = db.execute("SELECT * FROM todos ORDER BY id").fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM todos WHERE done = ? ORDER BY id", (int(done),)
                ).fetchall()
        return [self._todo(row) for row in rows]

    def get(self, todo_id: int) -> Todo | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM todos WHERE id = ?", (todo_id,)).fetchone()
        return None if row is None else self._todo(row)

    def create(self, title: str, done: bool = False) -> Todo:
        with self._connect() as db:
            cursor = db.execute("INSERT INTO todos (title, done) VALUES (?, ?)", (title, int(done)))
            todo_id = cursor.lastrowid
        assert todo_id is not None
        return Todo(id=todo_id, title=title, done=done)

    def update(self, todo_id: int, changes: dict[str, Any]) -> Todo | None:
        # Column names come from the validated, fixed set in app.py, never from the request.
        allowed = {"title", "done"}
        columns = [c for c in changes if c in allowed]
        with self._connect() as db:
            if columns:
                assignments = ", ".join(f"{c} = ?" for c in columns)
                values = [int(changes[c]) if c == "done" else changes[c] for c in columns]
                db.execute(f"UPDATE todos SET {assignments} WHERE id = ?", (*values, todo_id))
        return self.get(todo_id)

    def delete(self, todo_id: int) -> bool:
        with self._connect() as db:
            cursor = db.execute("DELETE FROM todos WHERE id = ?", (todo_id,))
        return cursor.rowcount > 0


def store_from_url(url: str | None) -> TodoStore:
    """A store for DATABASE_URL: unset means memory, sqlite:///path.db means that file."""
    if not url:
        return MemoryStore()
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        return SqliteStore(path or ":memory:")
    msg = f"unsupported DATABASE_URL {url.split(':', 1)[0]!r}: this app supports sqlite:///file.db"
    raise ValueError(msg)
