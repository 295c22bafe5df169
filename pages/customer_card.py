"""Customer card: everything the front line needs before saying hello, and the buttons to record
that they did."""

import streamlit as st

from cxdash.ui import card, risk
from cxdash.ui.figures import plotly_chart
from cxdash.ui.formatting import count, plain
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("Customer card")

query = st.text_input(
    "Find a customer by name, email, phone or any id",
    key=risk.CARD_QUERY,
    placeholder="Abbott, ann@example.com, +1 555 123 4567, CUS-0000123",
)
cx_id = None
if query.strip():
    matches = card.search(query)
    if matches.empty:
        st.warning(
            f"No customer matches {plain(repr(query))}. Try part of the name, the full email, the phone "
            "number or the customer id."
        )
        st.stop()
    if len(matches) > 1:
        more = " (the first ones: type more of the name to narrow it)" if len(matches) >= card.SEARCH_LIMIT else ""
        labels = [card.match_label(r) for r in matches.itertuples()]
        pick = st.selectbox(
            f"{count(len(matches), 'customer')} match{more}",
            range(len(labels)),
            format_func=lambda i: labels[i],
            key=risk.CARD_PICK,
        )
        cx_id = matches["cx_id"].iloc[pick]
    else:
        cx_id = matches["cx_id"].iloc[0]
elif st.session_state.get(risk.CARD_CUSTOMER):
    cx_id = st.session_state[risk.CARD_CUSTOMER]
    st.caption("Opened from the at-risk list; search for anyone else above.")
else:
    if risk.model_info() is None:
        risk.no_model_notice("the risk score on this card")
        st.info("Search for a customer above by name, email, phone or any id.")
        st.stop()
    cx_id = card.example_customer()
    if cx_id is None:
        st.info("Search for a customer above by name, email, phone or any id.")
        st.stop()
    st.caption("Showing the customer at the top of the at-risk list; search for anyone else above.")

c = card.customer_card(cx_id)
score = c["score"]
st.header(card.card_title(c, cx_id), anchor=False)  # a name from a file: escaped, shown as typed
risk.show_flash(risk.CARD_FLASH)

# the next action follows the newest intent signal or churn record, else the top reason (cxdash.risk.next_action)
action = card.next_action_sentence(c["next"])
if score:
    lead = f"**{score['risk']:.0%} risk of leaving** — {action}. {card.signal_sentence(c['signals'])}"
elif c["churn"]["churned"]:
    lead = (
        f"Not scored: this customer has already left, so the conversation is a win-back — {action}. "
        f"{card.signal_sentence(c['signals'])}"
    )
else:
    lead = f"Not scored yet — {action}. {card.signal_sentence(c['signals'])}"
st.markdown(lead)
st.markdown(card.churn_sentence(c["churn"]))
if score is None and risk.model_info() is None:
    risk.no_model_notice("the risk score on this card")

basis, currency = risk.customer_value_basis(), risk.currency()
c1, c2, c3, c4 = st.columns(4, border=True)
value, why = card.risk_tile(c)
c1.metric("Churn risk", value, help=why)
value, why = card.value_tile(c, basis, currency)
c2.metric(risk.value_label(basis, currency), value, help=why)
c3.metric("Open tickets", count(len(c["open_tickets"])))
status, who = card.follow_up_tile(c)
c4.metric("Follow-up status", status)
c4.caption(who)
b1, b2, note = st.columns([1, 1, 3], vertical_alignment="center")
for column, status_name, label in ((b1, "contacted", "Mark contacted"), (b2, "actioned", "Mark actioned")):
    if column.button(label, key=f"card_mark_{status_name}", width="stretch", icon=":material/check:"):
        risk.mark([cx_id], status_name)
        risk.flash(risk.CARD_FLASH, f"Recorded {card.card_title(c, cx_id)} as {status_name}, under your name.")
        st.rerun()
note.caption("Recorded under your name; the at-risk list and the CRM export show it at once.")

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
        st.dataframe(
            card.signals_table(c["signals"]),
            hide_index=True,
            width="stretch",
            column_config=card.SIGNALS_COLUMNS,
            row_height=card.SIGNALS_ROW_HEIGHT,
            height="content",  # one row per signal: all of them, without a scroll inside the table
        )
    st.subheader("What they already told us")
    st.markdown(card.told_us_sentence(c["contacts"]))
    if not c["contacts"].empty:
        st.dataframe(card.contacts_table(c["contacts"]), hide_index=True, width="stretch")
with right:
    st.subheader("Contact")
    for label, value, why in card.contact_rows(c["profile"]):
        st.text(f"{label}: {value}", help=why)  # values from a file: shown as text, never markdown
    if c["masked"]:
        st.caption("Email and phone are masked for your role; agents and admins see them in full.")
    st.subheader("Profile")
    st.dataframe(card.profile_rows(c["profile"]), hide_index=True, width="stretch")
    if not c["open_tickets"].empty:
        st.subheader("Open tickets")
        st.dataframe(card.contacts_table(c["open_tickets"]), hide_index=True, width="stretch")

st.subheader("Timeline across departments, newest first")
if c["timeline"].empty:
    st.markdown("Nothing on record.")
else:
    plotly_chart(card.timeline_figure(c["timeline"]), width="stretch")
    st.dataframe(card.timeline_table(c["timeline"]).head(50), hide_index=True, width="stretch")
