"""Journeys & friction: the path customers take across departments, where it breaks, who is stuck."""

import streamlit as st

from cxdash.ui import churnview, data, disclosure, paging, period
from cxdash.ui import journeys as ju
from cxdash.ui import journeys_charts as jc
from cxdash.ui.figures import plotly_chart
from cxdash.ui.formatting import count
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("Journeys & friction")

if not ju.has_journeys():
    st.info(
        "No data loaded yet. Run `make run` (it builds the demo company) or load extracts with "
        "`python -m cxdash ingest FILE --source NAME`; any event log with a case, an activity and a "
        "timestamp works (map the case column to customer_id)."
    )
    st.stop()

ju.init_filters()
now = data.overview_headline().as_of
period.init(now)
with st.sidebar:
    st.subheader("Period")
    if now is None:
        st.caption("The loaded data has no dates: the journeys cover all of it.")
    else:
        period.sidebar("Shared with Shared KPIs: a period chosen here holds there too.")
    st.subheader("Journey filters")
    st.slider(
        "Minimum edge share (%)",
        0.0,
        5.0,
        step=0.1,
        key=ju.MIN_SHARE + "_pct",
        value=float(st.session_state[ju.MIN_SHARE]) * 100,
        help="Edges carrying less than this share of all transitions are pooled into (other), "
        "so shares still add up to 100%.",
    )
    st.session_state[ju.MIN_SHARE] = st.session_state[ju.MIN_SHARE + "_pct"] / 100
    st.number_input(
        "Activities shown (top N, 0 = all)",
        0,
        500,
        step=1,
        key=ju.TOP_N,
        help="Less frequent activities are grouped as (other).",
    )
    st.toggle("Collapse repeated steps", key=ju.COLLAPSE, help="a a b becomes a b")
    st.toggle("Group activities by department", key=ju.BY_DEPARTMENT)
    st.text_area(
        "Rename rules (old => new, one a line)",
        key=ju.RENAME,
        height=80,
        help="Several activities renamed to one name are grouped, e.g. `contact: billing => contact`.",
    )
    st.number_input("Repeat-contact window (days)", 1, 90, key=ju.REPEAT_DAYS)
ju.sync_url()
chosen = ju.days()
if chosen:
    st.query_params["from"], st.query_params["to"] = chosen[0].isoformat(), chosen[1].isoformat()

filters = ju.map_filters()
repeat_days = int(st.session_state[ju.REPEAT_DAYS])
spots = ju.hotspot_table(repeat_days)
edges = ju.dfg(filters)
# A journey owner sees no aggregate of fewer than k customers (admins see everything).
k = disclosure.group_floor()
spots_k = disclosure.protect("hotspots", spots)
edges_k = disclosure.protect("transitions", edges)
st.markdown(ju.lead_sentence(spots_k.shown, edges_k.shown))
st.caption(
    f"Period: {period.label(*chosen)}, the same as on Shared KPIs (change it in the sidebar on either page). "
    "Steps, friction moments and paths are those inside it."
    if chosen
    else "Period: all of the loaded data (it has no dates)."
)

node_frame = ju.nodes(filters)
heads = ju.people_metrics(
    ju.journey_people(), data.overview_headline().customers, "customers" in set(data.sources()["kind"])
)
significant, significant_help = ju.significance_metric(spots_k.shown)
metrics = [
    *heads,
    ("Transitions", count(int(edges["count"].sum())), "Directly-follows pairs after the filters, in the period."),
    ("Activities", count(len(node_frame)), "Distinct steps after the filters, in the period."),
    ("Significant hotspots", significant, f"Of the hotspots tested. {significant_help}"),
]
for column, (name, value, help_text) in zip(st.columns(len(metrics), border=True), metrics, strict=True):
    column.metric(name, value, help=help_text)
churnview.caption()

st.subheader("Journey map")
st.caption(
    "Busiest transitions between activities, coloured by department; hover an arrow's middle for "
    "counts and times. Use the sidebar filters to thin it out."
)
plotly_chart(jc.journey_map(edges_k.shown, node_frame), width="stretch", key="journeys_map_chart")
if edges_k.note:
    st.caption(f"{edges_k.note} They are not drawn.")

st.subheader("Paths around one step")
activities = ju.all_activities(filters)
if st.session_state[ju.ANCHOR] not in activities and activities:
    st.session_state[ju.ANCHOR] = activities[0]
a1, a2, a3 = st.columns([3, 2, 2])
a1.selectbox("Step", activities, key=ju.ANCHOR)
a2.radio("Show", ["before", "after"], key=ju.DIRECTION, horizontal=True, format_func=lambda d: f"steps {d} it")
a3.slider("Steps", 1, 10, key=ju.STEPS)
anchor, direction = st.session_state[ju.ANCHOR], st.session_state[ju.DIRECTION]
whole_paths = ju.paths(filters, anchor, direction, st.session_state[ju.STEPS])
# A path of fewer than k customers could single someone out: pooled into (other paths).
drawn_paths, hidden_small = ju.pool_small_paths(whole_paths, k)
links = ju.path_links(drawn_paths, anchor, direction)
st.markdown(ju.paths_sentence(drawn_paths, anchor, direction, hidden_small))
if len(links):
    plotly_chart(jc.sankey(links, anchor), width="stretch", key="journeys_sankey_chart")

st.subheader("Friction hotspots")
if len(spots):
    note = ju.ranking_note(spots)
    if note:  # nothing to compare churn on: say so instead of showing lifts
        st.info(note, icon=":material/help:")
    else:
        st.caption(ju.hotspot_caption(spots_k.shown))
        plotly_chart(jc.hotspot_chart(spots_k.shown), width="stretch", key="journeys_hotspot_chart")
    owners = ju.source_owners()
    st.dataframe(
        ju.filled(spots_k.blank(ju.hotspot_display(spots, owners), keep=("hotspot", "who to call"))),
        hide_index=True,
        width="stretch",
        column_config={
            "churned after it": st.column_config.TextColumn(
                help="Customers who hit it, churn known, churned after their first moment of it, of those judged"
            ),
            "lift (95% CI)": st.column_config.TextColumn(
                help="Churn rate of those who hit it ÷ churn rate of those who never did, with its 95% interval; "
                "— when a group has no churned customer"
            ),
            "who to call": st.column_config.TextColumn(
                help="The owner recorded on the loaded sources of the department that leaked the customer",
                width="large",
            ),
        },
    )
    st.caption(ju.owners_note(spots_k.shown, owners))
    with st.expander("What each hotspot is, who never hit it, revenue at stake, where customers went next"):
        st.markdown(ju.hotspot_definitions(spots))
        st.dataframe(
            ju.filled(spots_k.blank(ju.hotspot_detail(spots), keep=("hotspot", "leaked by", "absorbed by"))),
            hide_index=True,
            width="stretch",
            row_height=60,  # long department names wrap instead of pushing columns off the page
            column_config={
                "hotspot": st.column_config.TextColumn(width=135),
                "p (BH-adjusted)": st.column_config.TextColumn(
                    width=78,
                    help="Fisher's exact test, two-sided, adjusted by Benjamini–Hochberg across the hotspots tested",
                ),
                "never hit it: churned": st.column_config.TextColumn(
                    width=140, help="Customers who never hit it, churn known: how many churned"
                ),
                "excess churned": st.column_config.TextColumn(width=72),
                "revenue at stake": st.column_config.TextColumn(
                    width=105, help="12-month revenue of touched customers who have not churned"
                ),
                "customers": st.column_config.TextColumn(width=80),
                "moments": st.column_config.TextColumn(width=72),
                "leaked by": st.column_config.TextColumn(width=128),
                "absorbed by": st.column_config.TextColumn(width=128),
            },
        )
else:
    st.info("No friction moments found in the period (no tickets, errors or failed payments in it).")
if spots_k.note:
    st.caption(spots_k.note)

st.subheader("Drill down")
cohort = None
if len(spots_k.shown):
    names = spots_k.shown["hotspot"].tolist()
    if st.session_state.get(ju.HOTSPOT) not in names:
        st.session_state[ju.HOTSPOT] = names[0]
    d1, d2 = st.columns([3, 1])
    d1.selectbox("Customers in hotspot", names, key=ju.HOTSPOT)
    cohort = ju.hotspot_cohort(st.session_state[ju.HOTSPOT], repeat_days)
    rows, span = paging.page_picker(d2, cohort, ju.COHORT_PAGE, "Page")
    st.caption(
        f"{count(len(cohort), 'customer')} in this hotspot in the period, every one listed ({span}; "
        f"{count(paging.PAGE_SIZE)} a page, most moments first; emails and phones masked)."
    )
    st.dataframe(ju.cohort_display(rows), hide_index=True, width="stretch", height=300)
    outreach, left_out = ju.hotspot_outreach(st.session_state[ju.HOTSPOT], repeat_days)
    st.markdown(ju.export_sentence(len(cohort), len(outreach), left_out, masked=True))
    # bound now: the file is built when clicked, after `outreach` is reused for the edge cohort below
    disclosure.download(
        "Export cohort (CSV)",
        lambda frame=outreach: ju.cohort_csv(frame),
        f"cohort-{st.session_state[ju.HOTSPOT].replace(' ', '-')}.csv",
        key="journeys_export",
        what="hotspot cohort",
        rows=len(outreach),
        note=disclosure.describe(
            outreach, what="customers in the hotspot", masked=("email", "phone"), consent_left_out=left_out
        ),
        show_note=False,  # the sentence above says it, against the count shown
    )

ids = cohort["cx_id"].tolist() if cohort is not None and len(cohort) else []
if ids:
    if st.session_state.get(ju.CUSTOMER) not in ids:
        st.session_state[ju.CUSTOMER] = ids[0]
    st.selectbox("Open one customer's timeline", ids, key=ju.CUSTOMER)
    st.caption("Their whole history, oldest first (not only the period), so the moment can be read in context.")
    st.dataframe(
        ju.timeline_display(ju.customer_timeline(st.session_state[ju.CUSTOMER])),
        hide_index=True,
        width="stretch",
        height=320,
    )

with st.expander("Customers who took one step of the map"):
    edge_names = ju.edge_labels(edges_k.shown)
    e1, e2 = st.columns([3, 1])
    e1.selectbox("Customers on edge", edge_names, key=ju.EDGE)
    if st.session_state.get(ju.EDGE):
        on_edge = ju.edge_cohort(filters, st.session_state[ju.EDGE])
        rows, span = paging.page_picker(e2, on_edge, ju.EDGE_PAGE, "Page of this step's customers")
        st.caption(
            f"{count(len(on_edge), 'customer')} took this step in the period, every one listed ({span}; "
            f"{count(paging.PAGE_SIZE)} a page, most times first)."
        )
        # one page formatted and sent: an edge at 1M customers holds 300,000 of them
        st.dataframe(ju.edge_display(rows), hide_index=True, width="stretch", height=260)
        outreach, left_out = ju.edge_outreach(filters, st.session_state[ju.EDGE])
        st.markdown(ju.export_sentence(len(on_edge), len(outreach), left_out))
        disclosure.download(
            "Export edge cohort (CSV)",
            lambda frame=outreach: ju.cohort_csv(frame),
            "edge-cohort.csv",
            key="journeys_edge_export",
            what="edge cohort",
            rows=len(outreach),
            note=disclosure.describe(outreach, what="customers who took the step", consent_left_out=left_out),
            show_note=False,
        )

st.subheader("Variants, funnels and handoffs")
tab_v, tab_f, tab_h = st.tabs(["Variants", "Funnel", "Handoffs"])
with tab_v:
    v1, v2, v3 = st.columns([2, 2, 3])
    max_steps = v1.number_input(
        "First N steps of each journey", 2, 50, value=ju.VARIANT_STEPS, key="journeys_variant_steps"
    )
    rarest = v2.toggle("Rarest first", key="journeys_variant_rarest")
    contains = v3.text_input("Containing", key="journeys_variant_contains")
    variants_k = disclosure.protect("variants", ju.variants(filters, max_steps, rarest, contains))
    st.dataframe(
        ju.variants_display(variants_k.pooled("variant", "rarer journeys", sum_columns=("share",))),
        hide_index=True,
        width="stretch",
    )
    if variants_k.note:
        st.caption(f"{variants_k.note} A journey so rare can describe one person, so those rows are pooled.")
with tab_f:
    default_steps, default_note = ju.default_funnel(filters, activities)
    chosen = st.multiselect("Ordered steps", activities, default=default_steps, key=ju.FUNNEL_STEPS + "_list")
    if chosen == default_steps:
        st.caption(default_note)
    f1, f2 = st.columns(2)
    days = f1.number_input("Conversion window (days)", 1, 365, key=ju.FUNNEL_DAYS)
    by_segment = f2.toggle("Break down by segment", key="journeys_funnel_segment")
    if chosen:
        frame = ju.funnel(chosen, days, by_segment)
        funnel_k = disclosure.protect("funnel", frame)
        plotly_chart(jc.funnel_chart(funnel_k.shown), width="stretch", key="journeys_funnel_chart")
        st.dataframe(
            funnel_k.blank(ju.funnel_display(frame), keep=("segment", "step", "activity")),
            hide_index=True,
            width="stretch",
        )
        if funnel_k.note:
            st.caption(funnel_k.note)
with tab_h:
    hand = ju.handoffs()
    if len(hand):
        st.caption(
            "Rows: the department handing the customer over; columns: the one receiving them. Each cell: customers "
            "handed over in the period · median wait from the last step of one department to the first of the next; "
            "— where nobody was handed over."
        )
        st.dataframe(ju.handoff_table(hand, k), hide_index=True, width="stretch")
        if k:
            st.caption(f"A cell of fewer than {k} customers shows no figure, so no one is singled out.")
    else:
        st.info("Every step in the period belongs to one department: no handoffs.")
