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
for card, (title, value, context, caption, help_text) in zip(
    st.columns(4), formatting.overview_cards(head, sources), strict=True
):
    box = card.container(border=True)
    box.metric(title, value, context, delta_color="off", delta_arrow="off", help=help_text)
    box.caption(caption)
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
        "source": st.column_config.TextColumn("source", width=88),
        "kind": st.column_config.TextColumn("kind", width=92),
        "owner": st.column_config.TextColumn("owner", width=156, help=formatting.SOURCES_COLUMNS_HELP["owner"]),
        "from": st.column_config.TextColumn("from", width=86),
        "to (newest record)": st.column_config.TextColumn("to (newest record)", width=160),
        "rows": st.column_config.NumberColumn("rows", format="localized", width=58),
        "customers": st.column_config.NumberColumn(
            "customers", format="localized", width=76, help=formatting.SOURCES_COLUMNS_HELP["customers"]
        ),
        "anonymous or unmatched": st.column_config.NumberColumn(
            "anonymous or unmatched",
            format="localized",
            width=165,
            help=formatting.SOURCES_COLUMNS_HELP["anonymous or unmatched"],
        ),
        "rejected rows": st.column_config.NumberColumn("rejected rows", format="localized", width=92),
    },
)
