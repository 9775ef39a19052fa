"""Keeping a project's secret values out of the feed, the model's context and the logs.

A project's secrets reach its commands as environment variables, so a command can print one
(``env``, a failing test that shows its config). Everything the agent records or sends to a
model passes through a :class:`Redactor` first. Streamed output is redacted with a
:class:`StreamRedactor`, which holds back just enough of each chunk's end that a secret split
across two chunks is still caught.

A command can as easily print a secret in another form: ``echo $KEY | base64``, ``xxd -p``,
a URL with the key in its query, ``tr a-z A-Z``, ``rev``. Each secret is therefore matched in
every form :func:`secret_forms` lists: the value, its case changes and its reverse, its hex and
URL encodings (in either case), and its base64 encodings (standard and URL-safe) at each of the
three byte alignments it can have inside a longer encoded text.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

# Shorter values ("1", "true", "dev") are too common to hide without mangling ordinary text,
# and too short to be worth stealing.
MIN_SECRET_CHARS = 6


def _base64_cores(raw: bytes) -> set[str]:
    """The part of ``raw``'s base64 that is the same wherever ``raw`` sits in the encoded data.

    Inside a longer text, ``raw`` starts at byte offset 0, 1 or 2 of a 3-byte group; for each,
    the characters that mix in bits of the bytes before or after it are left out.
    """
    cores: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode()
        first = -(-8 * offset // 6)  # the first character made of raw's bits only
        last = 8 * (offset + len(raw)) // 6  # one past the last such character
        core = encoded[first:last]
        cores.add(core)
        cores.add(core.translate(str.maketrans("+/", "-_")))
    return cores


def secret_forms(value: str) -> tuple[set[str], set[str]]:
    """The forms of ``value`` to redact: (case-insensitive ones, exact ones)."""
    raw = value.encode("utf-8", "surrogatepass")
    folded = {
        value,
        value[::-1],
        raw.hex(),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value, safe=""),
    }
    return folded, _base64_cores(raw)


class Redactor:
    """Replaces every known secret value, in each of its forms, by ``[secret NAME]``."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        # Forms matched case-insensitively are keyed in lower case; base64 forms exactly (a
        # case-changed base64 text decodes to something else).
        self._names: dict[str, str] = {}
        self._exact: dict[str, str] = {}
        for name, value in (secrets or {}).items():
            if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS:
                continue
            folded, exact = secret_forms(value)
            for form in folded:
                # The first name wins when two secrets share a value; either is fine to show.
                self._names.setdefault(form.lower(), name)
            for form in exact:
                self._exact.setdefault(form, name)
        folded_forms = sorted(self._names, key=len, reverse=True)
        exact_forms = sorted(self._exact, key=len, reverse=True)
        # Longest first, so a secret (or form) that contains another is replaced whole.
        forms = [(f, True) for f in folded_forms] + [(f, False) for f in exact_forms]
        forms.sort(key=lambda item: len(item[0]), reverse=True)
        alternatives = [f"(?i:{re.escape(f)})" if ci else re.escape(f) for f, ci in forms]
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None
        # The longest form is what a stream must hold back to catch one split across chunks.
        self.longest = max(map(len, [*folded_forms, *exact_forms]), default=0)

    @classmethod
    def from_values(cls, values: Iterable[tuple[str, str]]) -> Redactor:
        return cls(dict(values))

    @property
    def active(self) -> bool:
        return self._pattern is not None

    def _name(self, match: re.Match[str]) -> str:
        found = match.group(0)
        name = self._exact.get(found) or self._names.get(found.lower(), "?")
        return f"[secret {name}]"

    def text(self, value: str) -> str:
        if self._pattern is None or not value:
            return value
        return self._pattern.sub(self._name, value)

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
