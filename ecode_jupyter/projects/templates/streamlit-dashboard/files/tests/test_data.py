import pytest

import data
from data import Sale

SAMPLE = [
    Sale("2024-01", "North", "Widget", 10, 100.0),
    Sale("2024-01", "South", "Widget", 5, 50.0),
    Sale("2024-02", "North", "Gadget", 2, 60.0),
    Sale("2024-03", "North", "Widget", 20, 200.0),
]


def test_bundled_csv_loads():
    sales = data.load_sales()
    assert len(sales) == 72
    assert data.regions(sales) == ["North", "South", "West"]
    assert data.products(sales) == ["Gadget", "Widget"]
    assert data.months(sales)[0] == "2024-01"
    assert data.months(sales)[-1] == "2024-12"


def test_load_names_the_bad_line(tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text(
        "month,region,product,units,revenue\n"
        "2024-01,North,Widget,3,30\n"
        "2024-13,North,Widget,3,30\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="line 3: month must look like 2024-01"):
        data.load_sales(path)


def test_load_rejects_missing_columns(tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text("month,region\n2024-01,North\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing columns: product, revenue, units"):
        data.load_sales(path)


def test_filter_by_region_product_and_months():
    assert data.filter_sales(SAMPLE, regions=["South"]) == [SAMPLE[1]]
    assert data.filter_sales(SAMPLE, products=["Gadget"]) == [SAMPLE[2]]
    assert data.filter_sales(SAMPLE, start="2024-02", end="2024-02") == [SAMPLE[2]]
    assert data.filter_sales(SAMPLE) == SAMPLE
    assert data.filter_sales(SAMPLE, regions=[]) == []


def test_revenue_by_groups_and_sorts():
    assert data.revenue_by(SAMPLE, "month") == {"2024-01": 150.0, "2024-02": 60.0, "2024-03": 200.0}
    assert data.revenue_by(SAMPLE, "region") == {"North": 360.0, "South": 50.0}
    with pytest.raises(ValueError, match="cannot group by"):
        data.revenue_by(SAMPLE, "units")


def test_monthly_table_fills_gaps_with_zero():
    table = data.monthly_revenue_table(SAMPLE, "region")
    assert table == {
        "month": ["2024-01", "2024-02", "2024-03"],
        "North": [100.0, 60.0, 200.0],
        "South": [50.0, 0.0, 0.0],
    }


def test_moving_average():
    assert data.moving_average([1, 2, 3, 4], window=2) == [1.0, 1.5, 2.5, 3.5]
    assert data.moving_average([5, 7], window=1) == [5.0, 7.0]
    assert data.moving_average([], window=3) == []
    with pytest.raises(ValueError):
        data.moving_average([1], window=0)


def test_kpis():
    kpis = data.kpis(SAMPLE)
    assert kpis.revenue == 410.0
    assert kpis.units == 37
    assert kpis.average_price == round(410 / 37, 2)
    assert kpis.best_month == "2024-03"
    assert kpis.growth == round(200 / 60 - 1, 4)


def test_kpis_of_one_month_has_no_growth():
    assert data.kpis(SAMPLE[:2]).growth is None
    with pytest.raises(ValueError):
        data.kpis([])
