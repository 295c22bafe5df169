"""Shared KPIs: the numbers every department is judged on, and where departmental KPIs pull against them."""

import streamlit as st

from cxdash.ui import churnview, data, disclosure, period
from cxdash.ui import executive as ex
from cxdash.ui import executive_charts as charts
from cxdash.ui.figures import plotly_chart
from cxdash.ui.formatting import plain
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("Shared KPIs")

if data.sources().empty:
    st.info(
        "No data loaded yet. Run `make run` (it builds the demo company on first start) or load "
        "your own extracts on the upload page or with `python -m cxdash ingest FILE --source NAME`."
    )
    st.stop()

now = ex.as_of()
ex.init_state(now)
options = ex.options()

with st.sidebar:
    st.subheader("View")
    if now is None:
        st.caption("The loaded data has no dates: the KPIs are a snapshot, not a period.")
    else:
        period.sidebar("Shared with Journeys: a period chosen here holds there too.")
    for name, key in ex.FILTER_KEYS.items():
        if options.get(name):
            st.multiselect(ex.filter_label(name), options[name], key=key, placeholder="all")
    st.slider("Repeat contact within N days", 1, 60, key=ex.KEY_REPEAT_DAYS)
    st.selectbox("CLV horizon (months)", ex.HORIZONS, key=ex.KEY_HORIZON)
    st.caption("The link in the address bar keeps this view: share it to show the same numbers.")

view = ex.current_view()
ex.share_view(view)
report = ex.report(view)
# Executives see aggregates only: no group of fewer than k customers (admins see everything).
k = disclosure.group_floor()
if k is not None and 0 < (report.current.get("customers") or 0) < k:
    st.warning(
        f"These filters leave fewer than {k} customers, too few to show figures without singling someone "
        "out. Widen the filters or the period.",
        icon=":material/visibility_off:",
    )
    st.stop()
# ... nor by differencing two views (this one and the one without a filter): see privacy.differencing_check.
check = ex.differencing(view, k)
if check is not None and not check.allowed:
    st.warning(ex.refusal_text(check), icon=":material/visibility_off:")
    st.stop()
conflicts = ex.conflicts(view)
conflicts_k = disclosure.protect("conflicts", conflicts)

# The answer first: the period in one sentence, then any department pulling against the customer.
st.markdown(ex.lead_sentence(report))
flagged = ex.conflict_sentences(conflicts_k.shown, report.currency) if not conflicts_k.shown.empty else []
if flagged:
    st.error(
        "**Departmental KPIs pulling against the shared ones**\n\n" + "\n".join(f"- {s}" for s in flagged),
        icon=":material/warning:",
    )
elif not conflicts.empty:
    st.success(
        "No cohort is in the top quartile of its department's KPI and the bottom quartile of the shared outcome"
        + (f" (cohorts of fewer than {k} customers are not judged here)." if conflicts_k.mask.any() else ".")
    )
churnview.caption()
if report.period is None:
    st.info(report.notes.get("period", ""), icon=":material/event_busy:")

for title, rows in ex.card_rows(report):
    st.subheader(title)
    for cards in rows:
        for column, (key, label, kind, up_is_good) in zip(st.columns(ex.CARDS_PER_ROW), cards, strict=False):
            card = column.container(border=True)
            card.metric(
                label,
                ex.number(report.current.get(key), kind, report.currency),
                ex.delta(report, key, kind),
                delta_color="normal" if up_is_good else "inverse",
                help=ex.card_help(report, key),
            )
            card.caption(ex.coverage_caption(report, key))
    if title == "The silence metric" and report.current.get("silence_rate") is not None:
        st.caption(ex.SILENCE_WINDOWS)
missing = ex.unanswered(report)
if missing:
    st.caption(missing)
if report.notes.get("clv_predicted_total") and report.coverage.get("clv_predicted_total"):
    st.warning(f"Predicted CLV is not shown: {plain(report.notes['clv_predicted_total'])}", icon=":material/info:")
elif ex.clv_caption(report):
    st.caption(ex.clv_caption(report))
st.caption(f"Activation: {plain(report.notes['activation_rate'])}")
disclosure.download(
    "KPIs (CSV)", ex.kpi_csv(report), "shared_kpis.csv", key="executive_dl_kpis", what="shared KPIs", rows=len(ex.CARDS)
)

splits = ex.churn_splits(report, k)
if splits is not None:
    st.subheader("Churn by customer group")
    st.dataframe(splits, hide_index=True, width="stretch", column_config=ex.SPLIT_COLUMNS)
    st.caption(
        "Every customer in view, by the groups the customer table carries: a snapshot, as the data has "
        f"no dates. Groups of fewer than {k or 1} customers are left out."
    )

st.header("Where departmental KPIs pull against the shared ones")
if conflicts.empty:
    st.info("Conflicts need cohorts: load a CRM extract with campaigns/channels, tickets with teams, or opportunities.")
else:
    left, right = st.columns([1, 1])
    with left:
        quadrants = charts.conflict_quadrants(conflicts_k.shown)
        plotly_chart(quadrants, width="stretch", key="executive_chart_conflicts")
    with right:
        bars = charts.campaign_bars(conflicts_k.shown)
        plotly_chart(bars, width="stretch", key="executive_chart_campaigns")
    labels = ex.CONFLICT_LABELS
    conflict_rows = ex.conflict_table(conflicts_k.blank(keep=labels), report.currency)
    st.dataframe(
        conflict_rows,
        hide_index=True,
        width="stretch",
        column_config=ex.CONFLICT_COLUMN_CONFIG,
        row_height=ex.CONFLICT_ROW_HEIGHT,
        height=ex.conflict_table_height(len(conflict_rows)),
    )
    if conflicts_k.note:
        st.caption(f"{conflicts_k.note} Their figures and flags are not shown or drawn.")
    c1, c2, c3 = st.columns(3)
    disclosure.download(
        "Conflicts (CSV)",
        ex.csv(conflicts_k.blank(keep=labels)),
        "kpi_conflicts.csv",
        key="executive_dl_conf",
        what="KPI conflicts by cohort",
        rows=len(conflicts),
        note=conflicts_k.note,
        where=c1,
        show_note=False,
    )
    disclosure.download(
        "Conflict chart (PNG)",
        lambda: charts.to_png(quadrants),
        "kpi_conflicts.png",
        mime="image/png",
        key="executive_png_conf",
        what="KPI conflict chart",
        where=c2,
    )
    disclosure.download(
        "Campaign chart (PNG)",
        lambda: charts.to_png(bars),
        "campaigns.png",
        mime="image/png",
        key="executive_png_camp",
        what="campaign chart",
        where=c3,
    )

st.header("Trends")
monthly = ex.trends(view)
if monthly["active_customers"].fillna(0).sum() == 0:
    st.info("No dated activity in the last twelve months: no trend to show.")
else:
    monthly_k = disclosure.protect("trends", monthly)
    monthly = monthly_k.blank(keep=("period_start", "period_end"))
    trend_fig = charts.trends(monthly, now, report.currency)
    st.caption(
        "Each point is one calendar month (the last twelve, whatever period is chosen above); a card's change "
        f"is {ex.comparison(report)}."
    )
    plotly_chart(trend_fig, width="stretch", key="executive_chart_trends")
    silence = ex.silence_explained(report, monthly)
    if silence:
        st.caption(silence)
    if monthly_k.note:
        st.caption(f"{monthly_k.note} Those months are gaps in the lines.")
    c1, c2 = st.columns(2)
    disclosure.download(
        "Monthly KPIs (CSV)",
        ex.csv(monthly),
        "kpi_trends.csv",
        key="executive_dl_trends",
        what="monthly KPIs",
        rows=len(monthly),
        note=monthly_k.note,
        where=c1,
        show_note=False,
    )
    disclosure.download(
        "Trend chart (PNG)",
        lambda: charts.to_png(trend_fig),
        "kpi_trends.png",
        mime="image/png",
        key="executive_png_trends",
        what="KPI trend chart",
        where=c2,
    )

st.subheader("Retention by signup cohort")
matrix = ex.cohorts(view)
if matrix.empty:
    st.info(
        "The cohort matrix needs churn dates and signup dates; the churn definition in force has no dates "
        "(a churn flag without a churn date column) or the data has no signups."
    )
else:
    matrix_k = disclosure.protect("signup_cohorts", matrix)
    if matrix_k.shown.empty:
        st.info(f"Every signup cohort in view is too small to show. {matrix_k.note}")
    else:
        heat = charts.cohort_heatmap(matrix_k.shown.tail(24).dropna(axis=1, how="all"))
        plotly_chart(heat, width="stretch", key="executive_chart_cohorts")
        if matrix_k.note:
            st.caption(f"{matrix_k.note} Those cohorts are not drawn.")
        c1, c2 = st.columns(2)
        disclosure.download(
            "Cohort matrix (CSV)",
            ex.csv(matrix_k.blank(), index=True),
            "cohort_retention.csv",
            key="executive_dl_cohorts",
            what="retention by signup cohort",
            rows=len(matrix),
            note=matrix_k.note,
            where=c1,
            show_note=False,
        )
        disclosure.download(
            "Cohort chart (PNG)",
            lambda: charts.to_png(heat),
            "cohort_retention.png",
            mime="image/png",
            key="executive_png_cohorts",
            what="cohort retention chart",
            where=c2,
        )

with st.expander("Does the CLV model predict well? Calibration and holdout check", expanded=False):
    st.caption(
        "Hides the last 40% of the purchase history (at most a year) from the purchase model, fits it on the "
        "rest, and compares its forecast of the days each customer buys on with what they really did. Bars "
        "that match mean the predicted CLV can be trusted for customers like these."
    )
    check = ex.holdout() if st.toggle("Run the check", key="executive_run_holdout") else None
    if check is not None and not check.get("ok"):
        st.warning(check.get("message", "No check possible."), icon=":material/info:")
    elif check is not None:
        st.markdown(
            f"{check['message']} Predicted **{check['predicted_total']:,.0f}** purchase days, actual "
            f"**{check['actual_total']:,.0f}** "
            f"({check['predicted_total'] / max(check['actual_total'], 1) - 1:+.1%})."
        )
        by_frequency = check["by_frequency"]
        hold_k = disclosure.protect("holdout", by_frequency)
        by_frequency = hold_k.blank(keep=(by_frequency.columns[0],))
        hold_fig = charts.holdout_chart(by_frequency)
        plotly_chart(hold_fig, width="stretch", key="executive_chart_holdout")
        if hold_k.note:
            st.caption(hold_k.note)
        c1, c2 = st.columns(2)
        disclosure.download(
            "Holdout check (CSV)",
            ex.csv(by_frequency),
            "clv_holdout.csv",
            key="executive_dl_holdout",
            what="CLV holdout check by purchase frequency",
            rows=len(by_frequency),
            note=hold_k.note,
            where=c1,
            show_note=False,
        )
        disclosure.download(
            "Holdout chart (PNG)",
            lambda: charts.to_png(hold_fig),
            "clv_holdout.png",
            mime="image/png",
            key="executive_png_holdout",
            what="CLV holdout chart",
            where=c2,
        )

with st.expander("Definitions, owners and coverage"):
    table = ex.definitions_table(report)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config=ex.DEFINITION_COLUMNS,
    )
    disclosure.download(
        "Definitions (CSV)",
        ex.csv(table),
        "kpi_definitions.csv",
        key="executive_dl_defs",
        what="KPI definitions",
        rows=len(table),
    )
