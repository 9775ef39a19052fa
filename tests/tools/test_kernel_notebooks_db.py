"""execute_code, read_notebook, edit_notebook_cell and query_database over MCP."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import BlobResourceContents, EmbeddedResource, ResourceLink, TextResourceContents

from .conftest import McpConnect, error_of, text_of
from .test_files import tiny_png


async def test_execute_code(mcp_connect: McpConnect, make_project: Any, ecode_api: Any) -> None:
    pid, ws = await make_project()
    await ecode_api("PUT", f"projects/{pid}/secrets/GREETING", body={"value": "hi there"})
    png = tiny_png()
    async with mcp_connect() as client:

        async def run(code: str, **extra: Any) -> Any:
            return await client.call_tool("execute_code", {"project": pid, "code": code, **extra})

        first = text_of(await run("import os\nprint(os.getcwd(), os.environ['GREETING'])\nx = 20"))
        assert "[status: ok" in first and f"{ws.resolve()} hi there" in first
        # State persists between calls: one kernel per project.
        assert "42" in text_of(await run("x + 22"))

        shown = await run(
            "from IPython.display import Image, display\n"
            f"display(Image(data={png!r}))\nprint('done')"
        )
        resources = [b for b in shown.content if isinstance(b, EmbeddedResource)]
        assert len(resources) == 1
        blob = resources[0].resource
        assert isinstance(blob, BlobResourceContents) and blob.mime_type == "image/png"
        assert base64.b64decode(blob.blob) == png
        text = text_of(shown)
        assert "attached as a resource" in text and "done" in text
        assert "iVBOR" not in text  # never base64 inside the text

        failed = text_of(await run("1 / 0"))
        assert "[status: error" in failed and "ZeroDivisionError" in failed
        assert "\x1b[" not in failed  # no terminal colour codes for the model

        big = await run("print('x' * 100_000)")
        assert "characters omitted" in text_of(big) and len(text_of(big)) < 25_000
        # The whole output is a resource the client can read, saved in the workspace.
        (link,) = [b for b in big.content if isinstance(b, ResourceLink)]
        assert link.name.startswith(".ecode/outputs/") and link.size == 100_001
        assert (ws / link.name).read_text() == "x" * 100_000 + "\n"
        contents = await client.read_resource(link.uri)
        (full,) = contents.contents
        assert isinstance(full, TextResourceContents) and full.text == "x" * 100_000 + "\n"
        for uri, reason in (
            # The SDK's own traversal check refuses before our resolver is even asked.
            (str(link.uri).replace(".ecode/outputs/", "../../../etc/"), "Unknown resource"),
            (str(link.uri).replace(pid, "someone-elses-project"), "not_found"),
        ):
            with pytest.raises(MCPError) as refused:
                await client.read_resource(uri)
            assert reason in str(refused.value)

        slow = text_of(await run("import time\ntime.sleep(60)", timeout_s=1))
        assert "[status: timeout" in slow and "interrupted" in slow
        assert "42" in text_of(await run("x + 22"))  # interrupted, not restarted

        assert "invalid_input: " in error_of(
            await client.call_tool("execute_code", {"project": pid})
        )


def _nb(cells: list[dict[str, Any]]) -> str:
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


async def test_notebook_tools(mcp_connect: McpConnect, make_project: Any) -> None:
    pid, ws = await make_project()
    (ws / "analysis.ipynb").write_text(
        _nb(
            [
                {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "# Title"},
                {
                    "cell_type": "code",
                    "id": "c1",
                    "metadata": {},
                    "source": ["print(", "1)"],
                    "execution_count": 1,
                    "outputs": [
                        {"output_type": "stream", "name": "stdout", "text": ["1\n"]},
                        {
                            "output_type": "display_data",
                            "metadata": {},
                            "data": {"image/png": "iVBORw0KGgo="},
                        },
                    ],
                },
            ]
        )
    )
    (ws / "broken.ipynb").write_text("{not json")
    async with mcp_connect() as client:
        text = text_of(
            await client.call_tool("read_notebook", {"project": pid, "path": "analysis.ipynb"})
        )
        assert "2 cells" in text and "--- cell 1 · code · id c1 · [1]" in text
        assert "print(1)" in text and "1\n" in text and "[image/png output]" in text
        assert "iVBOR" not in text

        edited = await client.call_tool(
            "edit_notebook_cell",
            {"project": pid, "path": "analysis.ipynb", "index": 1, "source": "print(2)"},
        )
        assert edited.structured_content is not None
        assert "+print(2)" in edited.structured_content["diff"]
        inserted = await client.call_tool(
            "edit_notebook_cell",
            {
                "project": pid,
                "path": "analysis.ipynb",
                "index": 2,
                "action": "insert",
                "source": "Done.",
                "cell_type": "markdown",
            },
        )
        assert not inserted.is_error
        await client.call_tool(
            "edit_notebook_cell",
            {"project": pid, "path": "analysis.ipynb", "index": 0, "action": "delete"},
        )
        saved = json.loads((ws / "analysis.ipynb").read_text())
        assert [c["source"] for c in saved["cells"]] == ["print(2)", "Done."]
        assert saved["cells"][0]["outputs"]  # outputs of an edited cell are kept

        call = client.call_tool
        assert "out of range" in error_of(
            await call(
                "edit_notebook_cell",
                {"project": pid, "path": "analysis.ipynb", "index": 9, "source": "x"},
            )
        )
        assert "needs a source" in error_of(
            await call("edit_notebook_cell", {"project": pid, "path": "analysis.ipynb", "index": 0})
        )
        assert "invalid_input: " in error_of(
            await call(
                "edit_notebook_cell",
                {
                    "project": pid,
                    "path": "analysis.ipynb",
                    "index": 0,
                    "source": "x",
                    "action": "explode",
                },
            )
        )
        assert "not a valid notebook" in error_of(
            await call("read_notebook", {"project": pid, "path": "broken.ipynb"})
        )
        assert "not_found" in error_of(
            await call("read_notebook", {"project": pid, "path": "missing.ipynb"})
        )


async def test_query_database(mcp_connect: McpConnect, make_project: Any) -> None:
    pid, ws = await make_project()
    async with mcp_connect() as client:

        async def q(sql: str, **extra: Any) -> Any:
            return await client.call_tool("query_database", {"project": pid, "sql": sql, **extra})

        assert "no database yet" in error_of(await q("select 1"))
        created = await q("create table todo (id integer primary key, title text)", write=True)
        assert not created.is_error
        inserted = await q(
            "insert into todo (title) values (?), (?)", params=["a", "b"], write=True
        )
        assert inserted.structured_content is not None
        assert inserted.structured_content["rows_affected"] == 2
        rows = await q("select id, title from todo order by id")
        assert rows.structured_content == {
            "columns": ["id", "title"],
            "rows": [[1, "a"], [2, "b"]],
            "row_count": 2,
            "truncated": False,
        }
        capped = await q("select title from todo", max_rows=1)
        assert capped.structured_content is not None and capped.structured_content["truncated"]

        assert "readonly" in error_of(await q("delete from todo"))
        outside = ws.parent / "stolen.db"
        assert "not authorized" in error_of(await q(f"attach '{outside}' as x", write=True))
        assert "authorization denied" in error_of(await q(f"vacuum into '{outside}'", write=True))
        assert not outside.exists()
        assert "one statement" in error_of(await q("select 1; select 2"))
        assert "SQL error" in error_of(await q("select * from nope"))
    # The same file the project's code gets as DATABASE_URL.
    assert (ws / ".ecode" / "database.sqlite3").exists()
