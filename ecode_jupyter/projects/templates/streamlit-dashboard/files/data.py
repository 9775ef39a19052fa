"""Sales data for the dashboard: loading, filtering and aggregation.

Plain Python with no Streamlit import, so every calculation can be tested on its own.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATH = Path(__file__).parent / "data" / "sales.csv"
COLUMNS = ("month", "region", "product", "units", "revenue")


@dataclass(frozen=True)
class Sale:
    month: str  # "YYYY-MM", which sorts in time order as text
    region: str
    product: str
    units: int
    revenue: float


@dataclass(frozen=True)
class Kpis:
    revenue: float
    units: int
    average_price: float
    best_month: str
    growth: float | None  # last month against the one before, as a fraction


def _parse_month(value: str) -> str:
    year, sep, month = value.partition("-")
    if not (
        sep and len(year) == 4 and year.isdigit() and month.isdigit() and 1 <= int(month) <= 12
    ):
        msg = f"month must look like 2024-01, got {value!r}"
        raise ValueError(msg)
    return f"{year}-{int(month):02d}"


def load_sales(path: str | Path = DEFAULT_PATH) -> list[Sale]:
    """Read the CSV, checking every row; the error names the line that is wrong."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            msg = f"{path}: missing columns: {', '.join(sorted(missing))}"
            raise ValueError(msg)
        sales = []
        for line, row in enumerate(reader, start=2):
            try:
                sale = Sale(
                    month=_parse_month(row["month"].strip()),
                    region=row["region"].strip(),
                    product=row["product"].strip(),
                    units=int(row["units"]),
                    revenue=float(row["revenue"]),
                )
            except (TypeError, ValueError) as exc:
                msg = f"{path}, line {line}: {exc}"
                raise ValueError(msg) from exc
            if not sale.region or not sale.product:
                msg = f"{path}, line {line}: region and product must not be empty"
                raise ValueError(msg)
            sales.append(sale)
    return sales


def regions(sales: Iterable[Sale]) -> list[str]:
    return sorted({s.region for s in sales})


def products(sales: Iterable[Sale]) -> list[str]:
    return sorted({s.product for s in sales})


def months(sales: Iterable[Sale]) -> list[str]:
    return sorted({s.month for s in sales})


def filter_sales(
    sales: Iterable[Sale],
    *,
    regions: Sequence[str] | None = None,
    products: Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> list[Sale]:
    """Keep the sales that match; None means "no filter", an empty list means "nothing"."""
    return [
        s
        for s in sales
        if (regions is None or s.region in regions)
        and (products is None or s.product in products)
        and (start is None or s.month >= start)
        and (end is None or s.month <= end)
    ]


def revenue_by(sales: Iterable[Sale], field: str) -> dict[str, float]:
    """Total revenue per value of `field` ("month", "region" or "product"), sorted by key."""
    if field not in ("month", "region", "product"):
        msg = f"cannot group by {field!r}"
        raise ValueError(msg)
    totals: dict[str, float] = defaultdict(float)
    for s in sales:
        totals[getattr(s, field)] += s.revenue
    return {key: round(totals[key], 2) for key in sorted(totals)}


def monthly_revenue_table(sales: Iterable[Sale], split_by: str = "region") -> dict[str, list]:
    """Columns for a chart: "month", then one revenue column per region (or product).

    Months with no sales for a series get 0, so every column has the same length.
    """
    sales = list(sales)
    all_months = months(sales)
    series = regions(sales) if split_by == "region" else products(sales)
    cells: dict[tuple[str, str], float] = defaultdict(float)
    for s in sales:
        cells[(s.month, getattr(s, split_by))] += s.revenue
    table: dict[str, list] = {"month": all_months}
    for name in series:
        table[name] = [round(cells[(month, name)], 2) for month in all_months]
    return table


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over `window` points; the first points average what there is so far."""
    if window < 1:
        msg = "window must be at least 1"
        raise ValueError(msg)
    result = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        result.append(round(sum(chunk) / len(chunk), 2))
    return result


def kpis(sales: Sequence[Sale]) -> Kpis:
    if not sales:
        msg = "no sales to summarise"
        raise ValueError(msg)
    revenue = sum(s.revenue for s in sales)
    units = sum(s.units for s in sales)
    per_month = revenue_by(sales, "month")
    totals = list(per_month.values())
    growth = None
    if len(totals) >= 2 and totals[-2]:
        growth = round(totals[-1] / totals[-2] - 1, 4)
    return Kpis(
        revenue=round(revenue, 2),
        units=units,
        average_price=round(revenue / units, 2) if units else 0.0,
        best_month=max(per_month, key=lambda month: per_month[month]),
        growth=growth,
    )
