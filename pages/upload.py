"""Upload extracts (ops): map the columns once, see every rejected value, then load safely."""

import streamlit as st

from cxdash.ui import ops
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("Upload extracts")
st.caption(
    "Load a department's CSV export (also .csv.gz or .xlsx). Map its columns once: the mapping is "
    "remembered for the source, so next week's file loads without clicks. Nothing is stored until you choose."
)

files = st.file_uploader(
    "Extract files", type=["csv", "gz", "txt", "tsv", "xlsx"], accept_multiple_files=True, key="upload_files"
)
if not files:
    st.info("Drop one or more CSV extracts here to start.")
    st.stop()

names = [f.name for f in files]
chosen = st.selectbox("File", names, key="upload_chosen") if len(files) > 1 else names[0]
uploaded = files[names.index(chosen)]
token = f"{uploaded.file_id}"
if st.session_state.get(ops.K_FILE, (None,))[0] != token:
    ops.discard(st.session_state.get(ops.K_FILE, (None, None))[1])
    try:
        staged = ops.stage_upload(uploaded)
    except ops.ExtractError as exc:
        st.error(str(exc))
        st.stop()
    st.session_state[ops.K_FILE] = (token, staged)
    st.session_state.pop(ops.K_REPORT, None)
    st.session_state.pop(ops.K_RESULT, None)
staged = st.session_state[ops.K_FILE][1]

st.markdown(f"**{staged.display_name}**: {len(staged.header)} columns, read as {staged.fmt.describe()}.")

known = ops.known_sources()
left, right = st.columns(2)
default_source = ops.default_source_name(staged.display_name)
source = left.text_input(
    "Source name", value=default_source, key=f"upload_source_{token}",
    help="One name per export (crm, helpdesk, billing...). Existing sources: " + (", ".join(known["name"]) or "none"),
).strip()
mapping0 = ops.initial_mapping(staged, source, None)
kind = right.selectbox(
    "Kind of extract", ops.kind_names(), index=ops.kind_names().index(mapping0.kind), key=f"upload_kind_{token}",
    help="Detected from the column names and values; change it if it is wrong.",
)
if kind != mapping0.kind:
    mapping0 = ops.initial_mapping(staged, source, kind)

st.subheader("Map the columns")
st.caption("Fields marked * are required. Columns you leave unmapped are kept as attributes, not dropped.")
options = [ops.NOT_MAPPED, *staged.header]
chosen_columns = {}
grid = st.columns(3)
for i, field in enumerate(ops.kind_fields(kind)):
    current = mapping0.columns.get(field.name)
    label = f"{field.name}{' *' if field.required else ''}"
    pick = grid[i % 3].selectbox(
        label, options, index=options.index(current) if current in options else 0,
        key=f"upload_map_{token}_{kind}_{field.name}", help=field.description or None,
    )
    if pick != ops.NOT_MAPPED:
        chosen_columns[field.name] = pick
mapping = ops.make_mapping(kind, chosen_columns, mapping0.links)  # a saved mapping's link columns stay

with st.expander("Preview (first rows of the file)", expanded=False):
    st.dataframe(staged.preview.head(50), hide_index=True, width="stretch")

if st.button("Check the file", type="primary", key="upload_check"):
    try:
        with st.spinner("Validating every row..."):
            st.session_state[ops.K_REPORT] = (source, ops.check(staged, source, mapping))
        st.session_state.pop(ops.K_RESULT, None)
    except (ops.ExtractError, ops.MappingError, ops.IngestError) as exc:
        st.session_state.pop(ops.K_REPORT, None)
        st.error(str(exc))

report = st.session_state.get(ops.K_REPORT)
if report and report[0] == source:
    result = report[1]
    ops.render_report(result, staged)
    mode = st.radio(
        "When this source already has data", ["append", "replace"], horizontal=True, key="upload_mode",
        help="append adds new rows and skips rows already loaded; replace swaps the source's rows in one step.",
    )
    if result.rows_rejected:
        c1, c2 = st.columns(2)
        go = c1.button(
            f"Load the {result.rows_valid:,} valid rows, quarantine {result.rows_rejected:,}", key="upload_go_partial"
        )
        if c2.button("Load nothing", key="upload_cancel"):
            st.session_state.pop(ops.K_REPORT, None)
            st.info("Nothing was loaded. Fix the file and upload it again.")
            st.stop()
    else:
        go = st.button(f"Load {result.rows_valid:,} rows into '{source}'", type="primary", key="upload_go")
    if go:
        bar = st.progress(0.0, "starting")
        try:
            done = ops.load(staged, source, mapping, mode=mode, accept_invalid=True, progress=bar.progress)
            st.session_state[ops.K_RESULT] = done
            st.session_state.pop(ops.K_REPORT, None)
            ops.discard(staged)
            st.session_state.pop(ops.K_FILE, None)
        except (ops.ExtractError, ops.MappingError, ops.IngestError) as exc:
            st.error(f"Nothing was stored: {exc}")

done = st.session_state.get(ops.K_RESULT)
if done:
    st.success(done.summary())
    st.caption("The mapping was saved for this source. Every page now shows the new data.")
