"""At-risk customers: who is about to leave, why, who owns it, and what to do, ranked by value at risk."""

import streamlit as st

from cxdash.ui import churnview, disclosure, risk
from cxdash.ui.figures import plotly_chart
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("At-risk customers")

if risk.model_info() is None:
    st.info("No churn model yet: train one on the **Churn model** page or with `python -m cxdash train`.")
    st.stop()

with st.sidebar:
    st.subheader("At-risk filters")
    st.multiselect("Owning department", risk.departments(), key=risk.AT_RISK_DEPARTMENTS)
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
st.markdown(risk.at_risk_sentence(frame, stats, basis))
churnview.caption()
churnview.model_mismatch(risk.model_info()["metrics"])

c1, c2, c3, c4 = st.columns(4, border=True)
c1.metric("At risk (top 10%)", f"{stats['at_risk']:,}")
c2.metric("Contacted", f"{stats['contacted']:,}")
c3.metric("Actioned", f"{stats['actioned']:,}")
hours = stats["median_hours_to_first_action"]
c4.metric(
    "Time to first action",
    "n/a" if hours is None else f"{hours:.1f} h",
    help="Median time from scoring to the first contact or action (activation latency).",
)

if frame.empty:
    st.stop()

left, right = st.columns([2, 3])
with left:
    st.subheader("Risk at stake by owning department")
    plotly_chart(risk.department_figure(frame, basis), width="stretch")
with right:
    st.subheader("Act on selected customers")
    st.text_input("Your name", key=risk.AT_RISK_ACTOR, placeholder="who is acting")
    st.caption("Select rows in the list below, then record what you did. The CRM reads the activation table.")
    b1, b2, b3 = st.columns(3)
    contacted = b1.button("Mark contacted")
    actioned = b2.button("Mark actioned")
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
        where=b3,
        show_note=False,
    )
    st.caption(holds)

st.subheader("Customers, highest risk × value first" if basis else "Customers, highest risk first")
event = st.dataframe(
    risk.at_risk_table(frame, basis),
    hide_index=True,
    width="stretch",
    key=risk.AT_RISK_TABLE,
    on_select="rerun",
    selection_mode="multi-row",
    column_config={
        "risk": st.column_config.ProgressColumn("risk", format="percent", min_value=0.0, max_value=1.0),
        "value (12 months)": st.column_config.NumberColumn(format="localized"),
        "risk x value": st.column_config.NumberColumn(format="localized"),
        "why": st.column_config.TextColumn(width="large"),
    },
)
if contacted or actioned:
    rows = event.selection.rows if event is not None else []
    actor = st.session_state[risk.AT_RISK_ACTOR]
    if not rows:
        st.warning("Select at least one customer in the list first.")
    elif not actor.strip():
        st.warning("Enter your name so the CRM knows who acted.")
    else:
        n = risk.mark(frame["cx_id"].iloc[rows].tolist(), "contacted" if contacted else "actioned", actor)
        st.success(f"Recorded {n} customer(s) as {'contacted' if contacted else 'actioned'}.")
        st.rerun()
