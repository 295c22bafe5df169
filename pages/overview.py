"""Overview: what is loaded, from whom, how fresh, and the first headline numbers."""

import streamlit as st

from cxdash.ui import charts, churnview, data, formatting
from cxdash.ui.figures import plotly_chart
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("Overview")

sources = data.sources()
if sources.empty:
    st.info(
        "No data loaded yet. Run `make run` (it builds the demo company on first start) or load "
        "your own extracts with `python -m cxdash ingest FILE --source NAME`."
    )
    st.stop()

head = data.overview_headline()
st.markdown(formatting.overview_sentence(head, sources))

c1, c2, c3, c4 = st.columns(4, border=True)
c1.metric("Customers", f"{head.customers:,}", help=formatting.definition("customers"))
c2.metric(
    "Active (last 30 days)",
    f"{head.active_customers:,}",
    formatting.share(head.active_customers, head.customers),
    delta_color="off",
    delta_arrow="off",
    help=formatting.definition("active_customers"),
)
c3.metric(
    "Churned",
    f"{head.churned_customers:,}" if head.churn_basis != "none" else "n/a",
    formatting.share(head.churned_customers, head.customers) if head.churn_basis != "none" else None,
    delta_color="off",
    delta_arrow="off",
    help=formatting.definition("churned_customers"),
)
has_sales = "transactions" in set(sources["kind"])  # no transactions loaded: revenue is unknown, not zero
c4.metric(
    "Revenue",
    formatting.money(head.revenue, head.currency) if has_sales else "n/a",
    help=formatting.definition("revenue") + ("" if has_sales else " No transactions are loaded."),
)
churnview.caption()

left, right = st.columns([3, 2])
with left:
    st.subheader("Customers active each month, by department")
    plotly_chart(charts.monthly_customers_by_department(data.monthly_activity()), width="stretch")
with right:
    st.subheader("Rows loaded per source")
    plotly_chart(charts.rows_by_source(sources), width="stretch")

st.subheader("Sources")
st.dataframe(
    formatting.sources_table(sources),
    hide_index=True,
    width="stretch",
    column_config={
        "rows": st.column_config.NumberColumn("rows", format="localized"),
        "customers": st.column_config.NumberColumn("customers", format="localized"),
        "rejected": st.column_config.NumberColumn("rejected rows", format="localized"),
    },
)
