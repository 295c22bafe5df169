"""Customer card: everything the front line needs before saying hello."""

import streamlit as st

from cxdash.ui import risk
from cxdash.ui.figures import plotly_chart
from cxdash.ui.formatting import plain
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("Customer card")

query = st.text_input(
    "Find a customer by id, email or phone",
    key=risk.CARD_QUERY,
    placeholder="CUS-0000123, ann@example.com, +1 555 123 4567",
)
cx_id = None
if query.strip():
    matches = risk.search(query)
    if matches.empty:
        st.warning(f"No customer matches {plain(repr(query))}. Try the full email or the customer id.")
        st.stop()
    if len(matches) > 1:
        labels = [f"{r.customer_id} — {r.name or ''} ({r.matched})" for r in matches.itertuples()]
        pick = st.selectbox("Matches", range(len(labels)), format_func=lambda i: labels[i], key=risk.CARD_PICK)
        cx_id = matches["cx_id"].iloc[pick]
    else:
        cx_id = matches["cx_id"].iloc[0]
else:
    cx_id = risk.example_customer()
    if cx_id is None:
        st.info("Search for a customer above. (Train the churn model to see the highest-risk customer here.)")
        st.stop()
    st.caption("Showing the customer at the top of the at-risk list; search for anyone else above.")

c = risk.customer_card(cx_id)
profile, score = c["profile"], c["score"]
name = profile.get("name") or profile.get("customer_id") or cx_id
st.header(plain(name), anchor=False)  # a name from a file: shown as typed

# the next action follows the newest intent signal or churn record, else the top reason (cxdash.next_action)
action = risk.next_action_sentence(c["next"])
if score:
    lead = f"**{score['risk']:.0%} risk of leaving** — {action}. {risk.signal_sentence(c['signals'])}"
elif c["churn"]["churned"]:
    lead = (
        f"Not scored: this customer has already left, so the conversation is a win-back — {action}. "
        f"{risk.signal_sentence(c['signals'])}"
    )
else:
    lead = f"Not scored yet — {action}. {risk.signal_sentence(c['signals'])}"
st.markdown(lead)
st.markdown(risk.churn_sentence(c["churn"]))

c1, c2, c3, c4 = st.columns(4, border=True)
c1.metric("Churn risk", f"{score['risk']:.0%}" if score else "n/a")
c2.metric("Value (12 months)", f"{score['value']:,.0f}" if score else "n/a")
c3.metric("Open tickets", f"{len(c['open_tickets'])}")
c4.metric("Follow-up status", plain(score["status"]) if score else "n/a")

left, right = st.columns([3, 2])
with left:
    st.subheader("Why they might leave")
    if score and score["reasons"]:
        for r in score["reasons"]:
            st.markdown(risk.reason_line(r))
    else:
        st.markdown(risk.no_reasons_text(score))
    st.subheader("Recent signals")
    if c["signals"].empty:
        st.markdown("No intent, friction or churn signals on record.")
    else:
        st.dataframe(risk.signals_table(c["signals"]), hide_index=True, width="stretch")
    st.subheader("What they already told us")
    st.markdown(risk.told_us_sentence(c["contacts"]))
    if not c["contacts"].empty:
        st.dataframe(risk.contacts_table(c["contacts"]), hide_index=True, width="stretch")
with right:
    st.subheader("Profile")
    st.markdown(risk.consent_text(profile))
    st.dataframe(risk.profile_rows(profile), hide_index=True, width="stretch")
    if not c["open_tickets"].empty:
        st.subheader("Open tickets")
        st.dataframe(risk.contacts_table(c["open_tickets"]), hide_index=True, width="stretch")

st.subheader("Timeline across departments, newest first")
if c["timeline"].empty:
    st.markdown("Nothing on record.")
else:
    plotly_chart(risk.timeline_figure(c["timeline"]), width="stretch")
    st.dataframe(risk.timeline_table(c["timeline"]).head(50), hide_index=True, width="stretch")
