"""Drive the whole page with Streamlit's AppTest; skipped when Streamlit is not installed."""

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import data  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def app():
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception
    return at


def test_page_renders_kpis_and_charts(app):
    sales = data.load_sales()
    assert app.title[0].value.strip()
    assert app.metric[0].label == "Revenue"
    assert app.metric[0].value == f"${data.kpis(sales).revenue:,.0f}"
    assert app.metric[3].value == data.kpis(sales).best_month
    assert len(app.warning) == 0


def test_region_filter_changes_the_numbers(app):
    app.sidebar.multiselect[0].set_value(["West"]).run()

    assert not app.exception
    west = data.filter_sales(data.load_sales(), regions=["West"])
    assert app.metric[0].value == f"${data.kpis(west).revenue:,.0f}"


def test_empty_selection_shows_a_warning(app):
    app.sidebar.multiselect[0].set_value([]).run()

    assert not app.exception
    assert "No sales match" in app.warning[0].value
    assert len(app.metric) == 0
