"""{{project_name}}: a Streamlit sales dashboard. Run: python -m streamlit run app.py"""

from dataclasses import asdict

import streamlit as st

import data

st.set_page_config(page_title="{{project_name}}", page_icon=":bar_chart:", layout="wide")
st.title("{{project_name}}")
st.caption("Monthly sales by region and product. Filters are in the sidebar.")


@st.cache_data
def load() -> list[data.Sale]:
    # Cached so that moving a slider does not re-read the CSV.
    return data.load_sales()


sales = load()
all_months = data.months(sales)

with st.sidebar:
    st.header("Filters")
    chosen_regions = st.multiselect("Regions", data.regions(sales), default=data.regions(sales))
    chosen_products = st.multiselect("Products", data.products(sales), default=data.products(sales))
    start, end = st.select_slider(
        "Months", options=all_months, value=(all_months[0], all_months[-1])
    )
    window = st.slider("Moving average (months)", min_value=1, max_value=6, value=3)

selected = data.filter_sales(
    sales, regions=chosen_regions, products=chosen_products, start=start, end=end
)
if not selected:
    st.warning("No sales match these filters. Choose at least one region and one product.")
    st.stop()

kpis = data.kpis(selected)
revenue_col, units_col, price_col, best_col = st.columns(4)
revenue_col.metric(
    "Revenue",
    f"${kpis.revenue:,.0f}",
    delta=None if kpis.growth is None else f"{kpis.growth:+.1%} last month",
)
units_col.metric("Units sold", f"{kpis.units:,}")
price_col.metric("Average price", f"${kpis.average_price:,.2f}")
best_col.metric("Best month", kpis.best_month)

left, right = st.columns(2)
with left:
    st.subheader("Revenue per month by region")
    st.line_chart(data.monthly_revenue_table(selected, "region"), x="month")
with right:
    st.subheader(f"Total revenue and {window}-month moving average")
    per_month = data.revenue_by(selected, "month")
    st.line_chart(
        {
            "month": list(per_month),
            "revenue": list(per_month.values()),
            "moving average": data.moving_average(list(per_month.values()), window),
        },
        x="month",
    )

st.subheader("Revenue by product")
by_product = data.revenue_by(selected, "product")
st.bar_chart({"product": list(by_product), "revenue": list(by_product.values())}, x="product")

with st.expander(f"Show the {len(selected)} rows"):
    st.dataframe([asdict(sale) for sale in selected])
