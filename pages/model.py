"""Churn model: how good the model is, what drives it, and retraining it."""

import streamlit as st

from cxdash.ui import churnview, risk
from cxdash.ui.figures import plotly_chart
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("Churn model")

info = risk.model_info()
if info is None:
    st.info(
        "No churn model has been trained yet. Train one below (or run `python -m cxdash train`); "
        "on the 10,000-customer demo it takes under a minute."
    )
else:
    m = info["metrics"]
    st.markdown(risk.model_sentence(info))
    for text in risk.model_warnings(info):
        st.warning(text, icon=":material/warning:")
    tiles = risk.metric_tiles(m)
    for col, tile in zip(st.columns(len(tiles), border=True), tiles, strict=True):
        col.metric(tile["label"], tile["value"], help=tile["help"])
        if tile["caption"]:
            col.caption(tile["caption"])
    st.caption(
        f"{m['n_train']:,} training rows"
        + (f", {m['n_select']:,} rows to choose the candidate and calibrate" if m.get("n_select") else "")
        + f", {m['n_valid']:,} held-out rows; trained "
        f"{info['created_at']:%Y-%m-%d %H:%M} on data version {info['data_version']}."
        + (f" Sampled: {m['sample_note']}" if m.get("sample_note") else "")
    )

    if m.get("churn_definition"):
        st.caption(risk.model_churn_caption(m))
    churnview.caption()
    churnview.model_mismatch(m)

    left, right = st.columns(2)
    with left:
        st.subheader("What drives churn")
        plotly_chart(risk.importance_figure(m), width="stretch")
    with right:
        st.subheader("Are the probabilities honest?")
        plotly_chart(risk.calibration_figure(m), width="stretch")
        st.subheader(risk.candidates_heading(m))
        plotly_chart(risk.candidates_figure(m), width="stretch")

st.subheader("Retrain")
choices = ["(the company's churn definition)", *risk.label_choices()]
with st.form("model_retrain"):
    label = st.selectbox(
        "Label",
        choices,
        key=risk.MODEL_LABEL,
        help="The company's churn definition (chosen on Data health: dated definitions get "
        "time-based validation, an undated label stratified 5-fold cross-validation), or "
        "another label column of your customer table.",
    )
    horizon = st.number_input(
        "Horizon (days)", 7, 365, 30, key=risk.MODEL_HORIZON, help="Predict churn within this many days."
    )
    go = st.form_submit_button("Train a new version", type="primary")
if go:
    try:
        model = risk.train(label_column=None if label == choices[0] else label, horizon_days=float(horizon))
    except (ValueError, RuntimeError) as exc:
        st.error(risk.training_error(exc), icon=":material/error:")
    else:
        st.success(f"Model version {model.version} trained and every customer scored.")
        st.rerun()

history = risk.model_history()
if not history.empty:
    st.subheader("Versions")
    st.dataframe(history, hide_index=True, width="stretch")
