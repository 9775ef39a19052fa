"""GET projects in pages: newest activity first, a cursor to the next page, every project
once across pages even when new ones arrive meanwhile, and a bad cursor is a 400."""

from __future__ import annotations

from typing import Any

import pytest


async def test_pages_cover_every_project_once(ecode_api: Any) -> None:
    made = [
        (await ecode_api("POST", "projects", body={"name": f"P {n}"})).body["id"] for n in range(7)
    ]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "projects?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = await ecode_api("GET", query)
        assert page.status == 200, page.body
        assert len(page.body["projects"]) <= 3
        seen += [p["id"] for p in page.body["projects"]]
        pages += 1
        if pages == 1:
            # A project made after the first page does not shift the later pages.
            await ecode_api("POST", "projects", body={"name": "Late"})
        cursor = page.body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(made))  # newest first, each once
    # Roles come with each project; another user sees none of them.
    first = (await ecode_api("GET", "projects?limit=1")).body["projects"][0]
    assert first["role"] == "owner"
    assert (await ecode_api("GET", "projects", user="bob")).body == {
        "projects": [],
        "next_cursor": None,
    }


@pytest.mark.parametrize(
    "query",
    ["projects?cursor=garbage", "projects?cursor=W10", "projects?limit=0", "projects?limit=x"],
)
async def test_bad_paging_arguments_are_a_400(ecode_api: Any, query: str) -> None:
    answer = await ecode_api("GET", query)
    assert answer.status == 400, answer.body
    assert answer.body["error"]["code"] == "invalid_input"
