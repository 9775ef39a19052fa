"""In-memory item storage behind a small interface a database-backed class could also provide."""

from __future__ import annotations

import threading
from typing import Any

from models import Item, ItemCreate


class ItemRepository:
    def __init__(self) -> None:
        self._items: dict[int, Item] = {}
        self._next_id = 1
        # FastAPI runs plain `def` endpoints in a thread pool, so writes need a lock.
        self._lock = threading.Lock()

    def list(self, q: str | None = None, limit: int = 100, offset: int = 0) -> list[Item]:
        with self._lock:
            items = list(self._items.values())
        if q:
            needle = q.casefold()
            items = [item for item in items if needle in item.name.casefold()]
        return items[offset : offset + limit]

    def get(self, item_id: int) -> Item | None:
        with self._lock:
            return self._items.get(item_id)

    def create(self, data: ItemCreate) -> Item:
        with self._lock:
            item = Item(id=self._next_id, **data.model_dump())
            self._items[item.id] = item
            self._next_id += 1
            return item

    def replace(self, item_id: int, data: ItemCreate) -> Item | None:
        with self._lock:
            if item_id not in self._items:
                return None
            item = Item(id=item_id, **data.model_dump())
            self._items[item_id] = item
            return item

    def update(self, item_id: int, changes: dict[str, Any]) -> Item | None:
        with self._lock:
            current = self._items.get(item_id)
            if current is None:
                return None
            # Validate the merged result, so a partial update cannot produce a bad item.
            item = Item.model_validate({**current.model_dump(), **changes})
            self._items[item_id] = item
            return item

    def delete(self, item_id: int) -> bool:
        with self._lock:
            return self._items.pop(item_id, None) is not None
