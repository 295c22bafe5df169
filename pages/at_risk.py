"""At-risk customers: who is about to leave, why, who owns it, and what to do, ranked by value at risk.
A click on a row opens that customer's card."""

import streamlit as st

from cxdash.ui import churnview, disclosure, risk
from cxdash.ui.figures import plotly_chart
from cxdash.ui.formatting import count, department_words, duration, percent
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("At-risk customers")

if risk.model_info() is None:
    risk.no_model_notice("the at-risk list")
    st.stop()

with st.sidebar:
    st.subheader("At-risk filters")
    st.multiselect("Owning department", risk.departments(), format_func=department_words, key=risk.AT_RISK_DEPARTMENTS)
    st.selectbox("Status", list(risk.STATUS_CHOICES), key=risk.AT_RISK_STATUS)
    st.slider("Minimum risk", 0.0, 1.0, 0.0, 0.05, key=risk.AT_RISK_MIN_RISK)
    st.toggle("Only the riskiest 10%", value=True, key=risk.AT_RISK_TOP_DECILE)

frame = risk.at_risk_list(
    departments=st.session_state[risk.AT_RISK_DEPARTMENTS],
    status=st.session_state[risk.AT_RISK_STATUS],
    min_risk=st.session_state[risk.AT_RISK_MIN_RISK],
    top_decile=st.session_state[risk.AT_RISK_TOP_DECILE],
)
stats = risk.stats()
basis = risk.customer_value_basis()
currency = risk.currency()
risk.show_flash(risk.AT_RISK_FLASH)
st.markdown(risk.at_risk_sentence(frame, stats, basis, currency))
churnview.caption()
churnview.model_mismatch(risk.model_info()["metrics"])

c1, c2, c3, c4 = st.columns(4, border=True)
c1.metric("At risk (riskiest 10%)", count(stats["at_risk"]))
c2.metric("Contacted", count(stats["contacted"]), help="Customers of the riskiest 10% whose latest mark is contacted.")
c3.metric("Actioned", count(stats["actioned"]), help="Customers of the riskiest 10% whose latest mark is actioned.")
hours = stats["median_hours_to_first_action"]
c4.metric(
    "Time to first action",
    duration(None if hours is None else hours * 3600),
    help="Median time from scoring to the first contact or action (activation latency)"
    + ("; nobody has acted on this scoring yet." if hours is None else "."),
)
if stats["share_acted"] is not None:
    c4.caption(f"{percent(stats['share_acted'])} of the riskiest 10% acted on")

if frame.empty:
    st.stop()

st.subheader("Customers, highest risk × value first" if basis else "Customers, highest risk first")
bulk = st.toggle(
    "Select several to mark at once",
    key=risk.AT_RISK_BULK,
    on_change=risk.clear_list_selection,
    help="Off: a click on a row opens that customer's card. On: tick rows, then mark them contacted or actioned.",
)
if not bulk:
    st.caption("Click a customer to open their card: contact details, what they told us, and the buttons to mark them.")
table = risk.at_risk_table(frame, basis, currency)
value_column = risk.value_label(basis, currency)
event = st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    key=risk.AT_RISK_TABLE,
    on_select="rerun",
    # a click on any cell (or the row's box) opens the card; in bulk mode the boxes tick rows
    selection_mode="multi-row" if bulk else ["single-row", "single-cell"],
    row_height=74,  # taller than 4rem: Streamlit then wraps the reason and the action instead of cutting them
    placeholder="—",
    # widths add up to the main column at 1440 px (with the row boxes): no sideways scrolling
    column_config={
        "customer": st.column_config.TextColumn(width=116),
        "customer id": st.column_config.TextColumn(width=92),
        "risk": st.column_config.ProgressColumn("risk", format="%d%%", min_value=0, max_value=100, width=62),
        value_column: st.column_config.NumberColumn(format="localized", width=135, help=risk.value_help(basis)),
        "top reason": st.column_config.TextColumn(
            width=200, help="The first reason the model gives; the card lists every reason with the customer's figures."
        ),
        "next best action · owner": st.column_config.TextColumn(
            width=243, help="What to do next, then the department that owns it (spelled out)."
        ),
        "status": st.column_config.TextColumn(
            width=80, help="open: nobody has contacted or actioned this customer since they were scored."
        ),
    },
)
rows = list(event.selection.rows) if event is not None else []
if not bulk:
    clicked = rows or [cell[0] for cell in (event.selection.cells if event is not None else [])]
    if clicked:
        risk.open_card(str(frame["cx_id"].iloc[clicked[0]]))

if bulk:
    b1, b2, _ = st.columns([1, 1, 4])
    contacted = b1.button("Mark contacted", disabled=not rows)
    actioned = b2.button("Mark actioned", disabled=not rows)
    st.caption(f"{count(len(rows), 'customer')} selected. Marks are recorded under your name; the CRM reads them.")
    if (contacted or actioned) and rows:
        status = "contacted" if contacted else "actioned"
        n = risk.mark(frame["cx_id"].iloc[rows].tolist(), status)
        risk.flash(risk.AT_RISK_FLASH, f"Recorded {count(n, 'customer')} as {status}.")
        st.rerun()

left, right = st.columns([2, 3])
with left:
    st.subheader("Risk at stake by owning department")
    plotly_chart(risk.department_figure(frame, basis, currency), width="stretch")
with right:
    st.subheader("Export for the CRM")
    # The list feeds outreach: customers without marketing consent stay out of the file.
    outreach, left_out = disclosure.consented(frame)
    holds = disclosure.describe(outreach, what="at-risk customers for the CRM", consent_left_out=left_out)
    disclosure.download(
        "Export CSV for the CRM",
        risk.export(outreach),
        "at_risk_customers.csv",
        key="at_risk_export",
        what="at-risk list for the CRM",
        rows=len(outreach),
        note=holds,
        show_note=False,
    )
    st.caption(holds)
