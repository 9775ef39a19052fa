"""How the CLI's tables fit an 80-column terminal without cutting what a user types back.

Ids are shown as their shortest unique prefix of at least ``SHORT_ID_CHARS`` characters (as
git shows commits), and every command that takes an id accepts such a prefix
(:func:`find_by_ref`). Ids, statuses and numbers are never wrapped or cut; names, slugs,
models and prompts wrap inside their column instead of being cut with an ellipsis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.table import Table

from ..exceptions import InvalidInput

SHORT_ID_CHARS = 8
# A prefix shorter than this is more likely a typo than a meant id.
MIN_PREFIX_CHARS = 4


def short_ids(ids: Iterable[str]) -> dict[str, str]:
    """Each id → its prefix, the same length for all, long enough to tell them apart."""
    unique = sorted(set(ids))
    width = SHORT_ID_CHARS
    while width < max((len(i) for i in unique), default=0) and len(
        {i[:width] for i in unique}
    ) < len(unique):
        width += 1
    return {i: i[:width] for i in unique}


def find_by_ref(
    items: Sequence[dict[str, Any]], ref: str, *, what: str = "project"
) -> dict[str, Any] | None:
    """The item whose id or slug is ``ref``, else the one whose id starts with it; None when
    none does. A prefix that several ids start with is refused (InvalidInput)."""
    for item in items:
        if ref in (item.get("id"), item.get("slug")):
            return item
    if len(ref) < MIN_PREFIX_CHARS:
        return None
    started = [item for item in items if str(item.get("id", "")).startswith(ref)]
    if len(started) > 1:
        msg = f"{ref!r} is the start of {len(started)} {what} ids; give more of the id"
        raise InvalidInput(msg)
    return started[0] if started else None


def compact_table(**options: Any) -> Table:
    """A table with a rule under the header and no side borders (6 columns fewer than rich's
    default box spends on lines at 80 columns)."""
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, **options)


def add_id_column(table: Table, header: str) -> None:
    table.add_column(header, no_wrap=True, overflow="ignore")


def add_fixed_column(table: Table, header: str, **options: Any) -> None:
    """A status or number: shown whole, never wrapped or cut."""
    table.add_column(header, no_wrap=True, overflow="ignore", **options)


def add_text_column(table: Table, header: str, **options: Any) -> None:
    """Free text: wraps (long words fold) rather than end in an ellipsis."""
    table.add_column(header, overflow="fold", **options)


def when(timestamp: str | None) -> str:
    """An ISO timestamp as "YYYY-MM-DD HH:MM" on two lines (10 columns wide)."""
    text = str(timestamp or "")
    return f"{text[:10]}\n{text[11:16]}" if len(text) >= 16 else text


def model_label(provider: str | None, model: str | None) -> str:
    """The provider and model of a run, once when they are the same word ("offline")."""
    provider, model = provider or "", model or ""
    if not provider or provider == model:
        return model
    return f"{provider} {model}"
