"""Text statistics as pure functions: no files, no printing, so they are easy to test."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

# Adult silent reading speed; a common rule of thumb for "N min read" labels.
WORDS_PER_MINUTE = 230

# Letters and digits, keeping inner apostrophes and hyphens ("don't", "well-known").
_WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Split text into lower-case words."""
    return [match.group(0).lower().replace("\u2019", "'") for match in _WORD.finditer(text)]


def word_frequencies(text: str) -> Counter[str]:
    """Count how often each word occurs."""
    return Counter(tokenize(text))


def top_words(text: str, n: int = 5) -> list[tuple[str, int]]:
    """The n most common words, ties broken alphabetically so output is stable."""
    if n < 0:
        msg = "n must be zero or more"
        raise ValueError(msg)
    counts = word_frequencies(text)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]


def reading_minutes(word_count: int, words_per_minute: int = WORDS_PER_MINUTE) -> int:
    """Whole minutes to read, rounded up; empty text takes zero minutes."""
    if words_per_minute <= 0:
        msg = "words_per_minute must be positive"
        raise ValueError(msg)
    return -(-word_count // words_per_minute)


@dataclass(frozen=True)
class Summary:
    lines: int
    words: int
    unique_words: int
    characters: int
    reading_minutes: int
    top_words: list[tuple[str, int]]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["top_words"] = [{"word": w, "count": c} for w, c in self.top_words]
        return data


def summarize(text: str, top: int = 5) -> Summary:
    """Everything the command line reports, for one piece of text."""
    words = tokenize(text)
    return Summary(
        lines=len(text.splitlines()),
        words=len(words),
        unique_words=len(set(words)),
        characters=len(text),
        reading_minutes=reading_minutes(len(words)),
        top_words=top_words(text, top),
    )
