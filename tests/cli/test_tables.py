"""Short ids in the CLI's tables: long enough to tell the listed ones apart, and accepted back."""

from __future__ import annotations

import pytest

from ecode_jupyter.cli.tables import find_by_ref, model_label, short_ids
from ecode_jupyter.exceptions import InvalidInput


def test_short_ids_grow_until_the_listed_ids_differ() -> None:
    ids = ["0123456789abcdef", "0123456789ffffff", "fedcba9876543210"]
    assert short_ids(ids) == {
        "0123456789abcdef": "0123456789a",
        "0123456789ffffff": "0123456789f",
        "fedcba9876543210": "fedcba98765",
    }
    assert short_ids(["aaaaaaaaaaaa", "bbbbbbbbbbbb"]) == {
        "aaaaaaaaaaaa": "aaaaaaaa",
        "bbbbbbbbbbbb": "bbbbbbbb",
    }


def test_a_ref_is_an_id_a_slug_or_the_unique_start_of_an_id() -> None:
    items = [
        {"id": "0123456789abcdef", "slug": "todo"},
        {"id": "0123456789ffffff", "slug": "0123"},
        {"id": "fedcba9876543210", "slug": "shop"},
    ]
    assert find_by_ref(items, "todo") == items[0]
    assert find_by_ref(items, "0123") == items[1]  # a slug wins over an id's start
    assert find_by_ref(items, "fedcba98") == items[2]
    assert find_by_ref(items, "fed") is None  # too short to be meant as an id
    assert find_by_ref(items, "nothing") is None
    with pytest.raises(InvalidInput, match="give more of the id"):
        find_by_ref(items, "01234567")


def test_a_model_is_named_once_when_it_is_its_provider() -> None:
    assert model_label("offline", "offline") == "offline"
    assert model_label("anthropic", "claude-sonnet-4-5") == "anthropic claude-sonnet-4-5"
