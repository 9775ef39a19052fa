"""The notebook is valid and runs top to bottom without an error."""

import contextlib
import io
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "analysis.ipynb"


def _load():
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


def test_notebook_is_valid_nbformat_4():
    nb = _load()
    assert nb["nbformat"] == 4
    assert any(cell["cell_type"] == "code" for cell in nb["cells"])
    try:
        import nbformat
    except ImportError:
        return
    nbformat.validate(nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4))


def test_code_cells_run_in_order(monkeypatch):
    """Run the code cells in this process: quick, and needs no kernel."""
    monkeypatch.chdir(ROOT)  # a notebook runs in its own folder, so data/ paths resolve
    monkeypatch.setenv("MPLBACKEND", "Agg")  # no window if matplotlib is installed
    namespace = {"__name__": "__main__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for cell in _load()["cells"]:
            if cell["cell_type"] == "code":
                exec(compile("".join(cell["source"]), str(NOTEBOOK), "exec"), namespace)

    assert set(namespace["summary"]) == {"London", "Madrid", "Oslo", "Sydney"}
    assert namespace["summary"]["Sydney"]["warmest"] == "Jan"
    assert -1 <= namespace["correlations"]["Madrid"] <= 1
    assert "48 rows, 4 cities" in out.getvalue()


def test_notebook_executes_in_a_kernel():
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    printed = "".join(
        output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )
    assert "48 rows, 4 cities" in printed
    assert "Sydney" in printed
