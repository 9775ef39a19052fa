"""Keyset pages for the REST API's lists: ``?limit=`` and an opaque ``?cursor=``.

A cursor is the sort key of the last item of a page (for example its time and id), so the next
page starts right after it however many items were added or removed meanwhile; an offset would
skip or repeat items then, and costs the database a scan of everything before it. Clients treat
cursors as opaque strings: they are URL-safe base64 of a JSON list. Anything that does not
decode to a key of the expected kinds is a 400 naming ``cursor``, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from .exceptions import InvalidInput

CURSOR_MAX_CHARS = 1024
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def encode_cursor(*key: str | int | datetime) -> str:
    """The cursor that resumes a list after the item whose sort key is ``key``."""
    parts = [k.isoformat() if isinstance(k, datetime) else k for k in key]
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *kinds: type, int_max: int = INT64_MAX) -> tuple[Any, ...]:
    """The key ``encode_cursor`` put in ``cursor``, each part checked against ``kinds``
    (``str``, ``int`` or ``datetime``); ints must fit the column they are compared with
    (``int_max``: ``INT32_MAX`` for an INTEGER column, which is 32 bits on PostgreSQL)."""
    msg = "cursor is not one this API gave out"
    if len(cursor) > CURSOR_MAX_CHARS:
        raise InvalidInput(msg, field="cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidInput(msg, field="cursor") from None
    if not isinstance(parts, list) or len(parts) != len(kinds):
        raise InvalidInput(msg, field="cursor")
    key: list[Any] = []
    for part, kind in zip(parts, kinds, strict=True):
        if kind is datetime and isinstance(part, str):
            try:
                key.append(datetime.fromisoformat(part))
            except ValueError:
                raise InvalidInput(msg, field="cursor") from None
        elif kind is int and isinstance(part, int) and not isinstance(part, bool):
            # Past the column's range PostgreSQL fails the query (a 500), SQLite does not.
            if not 0 <= part <= int_max:
                raise InvalidInput(msg, field="cursor")
            key.append(part)
        elif kind is str and isinstance(part, str):
            try:  # a lone surrogate ("\ud800") decodes from JSON but no database takes it
                part.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput(msg, field="cursor") from None
            key.append(part)
        else:
            raise InvalidInput(msg, field="cursor")
    return tuple(key)
