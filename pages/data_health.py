"""Data health (ops): is every source fresh, owned, clean and linked to customers?"""

import streamlit as st

from cxdash.ui import auth, churnview, followup, ops, opsview
from cxdash.ui.figures import plotly_chart
from cxdash.ui.formatting import count, labelled, percent, plain
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("Data health")

h = ops.health()
gov = h["governance"]
if gov.empty:
    st.info("No sources loaded yet. Upload an extract on the Upload page or run `python -m cxdash demo`.")
    st.stop()

st.markdown(opsview.verdict(gov))

c1, c2, c3, c4 = st.columns(4, border=True)
c1.metric("Sources", count(len(gov)))
c2.metric(
    "Rows passing validation",
    percent(opsview.weighted_quality(gov)),
    help="Of the rows read in each source's last load, the share that passed validation.",
)
c3.metric("Rows linked to a CRM customer", percent(opsview.weighted_stitch(gov)))
slowest, why = opsview.slowest_activation(gov)
c4.metric("Slowest activation latency", slowest, help=why)

st.subheader("Sources")
st.dataframe(
    opsview.governance_table(gov),
    hide_index=True,
    width="stretch",
    column_config=opsview.GOVERNANCE_COLUMNS,
    row_height=opsview.GOVERNANCE_ROW_HEIGHT,
    height="content",  # every source, without a scroll inside the table
)
st.caption(
    "Activation is the latency from an event to its being on the customer's card (the end of the load that "
    "brought it), for each source's newest record. '95% within' counts only the records that were new in their "
    "load; it stays — "
    "until a source has one (a first load of records older than "
    f"{opsview.LATENCY_WINDOW_DAYS} days is history, not slowness). A source loaded long after its newest "
    "record, as the demo company is, shows that delay under activation."
)
with st.expander("Targets, repeated keys, loads and saved mappings", expanded=False):
    st.dataframe(
        opsview.upkeep_table(gov),
        hide_index=True,
        width="stretch",
        column_config={
            "target": st.column_config.TextColumn(
                "latency target (95%)", help="The owner's target: 95% of new records usable within this time."
            ),
            "duplicate keys": st.column_config.TextColumn(
                "duplicate keys", help="Stored rows minus distinct natural keys (ticket ids, subscription ids...)."
            ),
        },
    )

followup.render()

st.subheader("Churn definition")
churnview.flash()
res = churnview.caption()
if res.candidates:
    st.dataframe(
        churnview.candidates_table(res),
        hide_index=True,
        width="stretch",
        column_config=churnview.TABLE_COLUMNS,
        row_height=churnview.TABLE_ROW_HEIGHT,
    )
    names = [c.name for c in res.candidates]
    with st.form("health_churn_form", border=False):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        pick = left.selectbox(
            "The company's churn definition (every page's churn figures follow it)",
            names,
            index=names.index(res.name) if res.name in names else 0,
            key=churnview.CHOICE_KEY,
        )
        if right.form_submit_button("Use this definition", type="primary"):
            churnview.choose(pick, auth.current_user())
            st.rerun()

left, right = st.columns(2)
with left:
    st.subheader("Coverage: who each number can speak for")
    plotly_chart(opsview.coverage_chart(h["coverage"]), width="stretch")
with right:
    st.subheader("How rows were linked to customers")
    plotly_chart(opsview.stitch_chart(h["stitch"]), width="stretch")

with st.expander("Missing values in key fields", expanded=False):
    plotly_chart(opsview.null_chart(h["nulls"]), width="stretch")

with st.expander(f"Shared identifiers kept from merging people ({count(len(h['hubs']))})", expanded=False):
    st.caption(
        "An email or phone that links many different customers (a helpdesk's own address, a placeholder "
        "number) would merge strangers into one profile, and one equally near two CRM records would merge two "
        "customers the CRM keeps apart. These are excluded from linking; the reason column says which."
    )
    st.dataframe(labelled(h["hubs"]), hide_index=True, width="stretch")

quarantined = h["quarantine"]
with st.expander(
    f"Quarantined values (latest {count(len(quarantined))})" if len(quarantined) else "Quarantined values (none)",
    expanded=False,
):
    if len(quarantined):
        st.dataframe(labelled(quarantined), hide_index=True, width="stretch")
    else:
        st.caption("No load has quarantined a value: every row loaded passed validation.")

with st.expander("Set an activation-latency target", expanded=False):
    src = st.selectbox("Source", list(gov["name"]), key="health_target_source")
    current = gov.loc[gov["name"] == src, "latency_target_hours"].iloc[0]
    hours = st.number_input(
        "Target: 95% of records usable within (hours)",
        min_value=0.0,
        value=float(current) if current == current and current is not None else 24.0,
        step=1.0,
        key="health_target_hours",
    )
    if st.button("Save target", key="health_target_save"):
        ops.save_latency_target(src, hours)
        st.success(f"Target for {plain(src)} set: 95% of records usable within {opsview.hours(hours)}.")
        st.rerun()

saved = st.session_state.pop(opsview.OWNER_SAVED_KEY, None)
with st.expander("Set a source's department and owner", expanded=saved is not None):
    st.caption(
        "The department places the source's steps on journeys, handoffs and hotspots (where a row does not "
        "name its own); the owner is who to call about it. Both start as the kind's department."
    )
    if saved:
        st.success(plain(saved), icon=":material/check_circle:")
    owner_src = st.selectbox("Source", list(gov["name"]), key="health_owner_source")
    row = gov.loc[gov["name"] == owner_src].iloc[0]
    options, current = opsview.department_choices(ops.departments(), row["department"])
    form_keys = opsview.owner_form_keys(owner_src, st.session_state.get(opsview.OWNER_FORM_KEY, 0))
    choice = st.selectbox(
        "Department",
        options,
        index=current,
        format_func=opsview.department_choice_words,
        placeholder="Choose the department",
        key=form_keys[0],
    )
    typed = ""
    if choice == opsview.ANOTHER_DEPARTMENT:
        typed = st.text_input(
            "The other department's name",
            placeholder="for example field service",
            help="Stored lower-case, as the data names departments (support, billing...); every page then "
            "shows it by this name.",
            key=form_keys[1],
        )
    owner_value, owner_placeholder = opsview.owner_box(row["department"], row.get("owner"))
    new_owner = st.text_input(
        "Owner (team or person)",
        value=owner_value,
        placeholder=owner_placeholder,
        help="Left blank, the owner stays as it is.",
        key=form_keys[2],
    )
    if st.button("Save department and owner", key="health_owner_save"):
        department = None
        try:
            department = opsview.department_to_save(choice, typed)
            after = ops.save_source_owner(owner_src, department, new_owner.strip() or None)
        except (KeyError, ValueError) as exc:
            # the message quotes the source's name and typed text: escaped, never markdown
            st.error(plain(opsview.owner_not_saved_words(owner_src, department, str(exc.args[0]))))
        else:
            st.session_state[opsview.OWNER_SAVED_KEY] = opsview.owner_saved_words(owner_src, after)
            # new widgets: the form shows what is stored now, not what was typed
            st.session_state[opsview.OWNER_FORM_KEY] = st.session_state.get(opsview.OWNER_FORM_KEY, 0) + 1
            st.rerun()
