"""Keeping a project's secret values out of the feed, the model's context and the logs.

A project's secrets reach its commands as environment variables, so a command can print one
(``env``, a failing test that shows its config). Everything the agent records or sends to a
model passes through a :class:`Redactor` first. Streamed output is redacted with a
:class:`StreamRedactor`, which holds back just enough of each chunk's end that a secret split
across two chunks is still caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# Shorter values ("1", "true", "dev") are too common to hide without mangling ordinary text,
# and too short to be worth stealing.
MIN_SECRET_CHARS = 6


class Redactor:
    """Replaces every known secret value in text by ``[secret NAME]``."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        self._names: dict[str, str] = {}
        for name, value in (secrets or {}).items():
            if isinstance(value, str) and len(value) >= MIN_SECRET_CHARS:
                # The longest name wins when two secrets share a value; either is fine to show.
                self._names.setdefault(value, name)
        values = sorted(self._names, key=len, reverse=True)
        # Longest first, so a secret that contains another is replaced whole.
        self._pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None
        self.longest = len(values[0]) if values else 0

    @classmethod
    def from_values(cls, values: Iterable[tuple[str, str]]) -> Redactor:
        return cls(dict(values))

    @property
    def active(self) -> bool:
        return self._pattern is not None

    def text(self, value: str) -> str:
        if self._pattern is None or not value:
            return value
        return self._pattern.sub(lambda m: f"[secret {self._names[m.group(0)]}]", value)

    def data(self, value: Any) -> Any:
        """``value`` with every string inside it (keys included) redacted."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


class StreamRedactor:
    """Redacts a stream of text chunks, holding back a possible partial secret at each end."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = ""

    def feed(self, chunk: str) -> str:
        """The redacted text that is safe to pass on now (possibly empty)."""
        if not self._redactor.active:
            return chunk
        text = self._redactor.text(self._held + chunk)
        # A secret may begin in the last (longest - 1) characters and end in the next chunk.
        keep = min(len(text), self._redactor.longest - 1)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The held-back rest, at the end of the stream."""
        rest, self._held = self._held, ""
        return self._redactor.text(rest)
