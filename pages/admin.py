"""Admin: who may sign in and as what, erasure requests, and the audit log."""

import streamlit as st

from cxdash.ui import admin
from cxdash.ui.figures import plotly_chart
from cxdash.ui.formatting import plain
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("Admin")

people = admin.users()
recent = admin.audit_log(limit=1000)
st.markdown(admin.summary_sentence(people, recent))

users_tab, erase_tab, audit_tab = st.tabs(["Users & roles", "Erase a customer", "Audit log"])

with users_tab:
    st.dataframe(admin.users_table(people), hide_index=True, width="stretch")
    left, right = st.columns(2)
    with left, st.form("admin_add_form", clear_on_submit=True):
        st.subheader("Add a person")
        name = st.text_input("User name (their email for single sign-on)", key=admin.ADD_NAME)
        role = st.selectbox("Role", admin.ROLES, key=admin.ADD_ROLE, format_func=admin.ROLE_LABELS.get)
        sso = st.checkbox("Signs in only through single sign-on (no password)", key=admin.ADD_SSO)
        if st.form_submit_button("Add", type="primary"):
            try:
                password = admin.add_user(name, role, sso)
            except admin.UserError as exc:
                st.error(plain(exc))
            else:
                st.success(f"{plain(name)} added as {role}.")
                if password:
                    st.warning("Their password is shown only this once; pass it on safely:", icon=":material/key:")
                    st.code(password, language=None)
    with right, st.form("admin_edit_form"):
        st.subheader("Change a person")
        who = st.selectbox("User", people["username"].tolist(), key=admin.EDIT_USER)
        action = st.selectbox("Change", admin.EDIT_ACTIONS, key=admin.EDIT_ACTION)
        new_role = st.selectbox(
            "New role (for a role change)", admin.ROLES, key=admin.EDIT_ROLE, format_func=admin.ROLE_LABELS.get
        )
        if st.form_submit_button("Apply") and who:
            try:
                password = admin.edit_user(who, action, new_role)
            except admin.UserError as exc:
                st.error(plain(exc))
            else:
                st.success(f"{action.capitalize()}: done for {plain(who)}.")
                if password:
                    st.warning("The new password is shown only this once:", icon=":material/key:")
                    st.code(password, language=None)

with erase_tab:
    st.markdown(
        "Erasing removes the customer and **every identifier linked to them** from every table (extracts, "
        "identity graph, scores, follow-up lists), and keeps them out of future loads. The audit log keeps "
        "only a salted hash of the id. This cannot be undone."
    )
    with st.form("admin_erase_form", clear_on_submit=True):
        ident = st.text_input("Customer id, email, phone, account or visitor id", key=admin.ERASE_ID)
        sure = st.checkbox("I have checked the request and want to erase this customer", key=admin.ERASE_CONFIRM)
        if st.form_submit_button("Erase", type="primary", icon=":material/delete_forever:"):
            if not sure:
                st.error("Tick the confirmation first.")
            else:
                try:
                    result = admin.erase(ident)
                except admin.ErasureFailed as exc:
                    st.error(plain(exc))
                else:
                    st.success(result.summary())
                    if result.scrubbed:
                        st.info(admin.COMPACT_ADVICE, icon=":material/cleaning_services:")

with audit_tab:
    action = st.selectbox(
        "Action",
        ["(all)", *admin.audit_actions()],
        key=admin.AUDIT_ACTION,
        format_func=lambda a: a.replace("_", " "),
    )
    log = recent if action == "(all)" else admin.audit_log(action)
    chart = admin.audit_chart(log)
    if chart is None:
        st.info("Nothing in the audit log yet.")
    else:
        plotly_chart(chart, width="stretch")
        st.dataframe(
            admin.audit_table(log),
            hide_index=True,
            width="stretch",
            column_config={"when": st.column_config.DatetimeColumn("when (UTC)", format="D MMM YYYY, HH:mm:ss")},
        )
