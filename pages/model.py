"""Churn model: how good the model is, what drives it, and retraining it."""

import streamlit as st

from cxdash.ui import churnview, risk
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("Churn model")

info = risk.model_info()
if info is None:
    st.info("No churn model has been trained yet. Train one below (or run `python -m cxdash train`); "
            "on the demo company it takes about a minute.")
else:
    m = info["metrics"]
    st.markdown(risk.model_sentence(info))
    c1, c2, c3, c4 = st.columns(4, border=True)
    c1.metric("ROC AUC", f"{m['roc_auc']:.3f}", help="Chance a leaver is ranked above a stayer (0.5 = coin toss).")
    c2.metric("PR AUC", f"{m['pr_auc']:.3f}", help=f"Average precision; the base rate is {m['base_rate']:.1%}.")
    c3.metric("Top-decile lift", f"{m['top_decile_lift']:.1f}×",
              help="Churn rate among the riskiest 10% divided by the overall churn rate.")
    c4.metric("Top-decile capture", f"{m['top_decile_capture']:.0%}",
              help="Share of all leavers found in the riskiest 10%.")
    st.caption(f"{m['n_train']:,} training rows, {m['n_valid']:,} validation rows; trained "
               f"{info['created_at']:%Y-%m-%d %H:%M} on data version {info['data_version']}."
               + (f" Sampled: {m['sample_note']}" if m.get("sample_note") else ""))

    if m.get("churn_definition"):
        st.caption(risk.model_churn_caption(m))
    churnview.caption()
    churnview.model_mismatch(m)

    left, right = st.columns(2)
    with left:
        st.subheader("What drives churn")
        st.plotly_chart(risk.importance_figure(m), width="stretch")
    with right:
        st.subheader("Are the probabilities honest?")
        st.plotly_chart(risk.calibration_figure(m), width="stretch")
        st.subheader("Candidates compared on the same validation")
        st.plotly_chart(risk.candidates_figure(m), width="stretch")

st.subheader("Retrain")
choices = ["(the company's churn definition)", *risk.label_choices()]
with st.form("model_retrain"):
    label = st.selectbox("Label", choices, key=risk.MODEL_LABEL,
                         help="The company's churn definition (chosen on Data health: dated definitions get "
                              "time-based validation, an undated label stratified 5-fold cross-validation), or "
                              "another label column of your customer table.")
    horizon = st.number_input("Horizon (days)", 7, 365, 30, key=risk.MODEL_HORIZON,
                              help="Predict churn within this many days.")
    go = st.form_submit_button("Train a new version", type="primary")
if go:
    try:
        model = risk.train(label_column=None if label == choices[0] else label, horizon_days=float(horizon))
    except (ValueError, RuntimeError) as exc:
        st.error(f"Training failed: {exc}")
    else:
        st.success(f"Model version {model.version} trained and every customer scored.")
        st.rerun()

history = risk.model_history()
if not history.empty:
    st.subheader("Versions")
    st.dataframe(history, hide_index=True, width="stretch")
