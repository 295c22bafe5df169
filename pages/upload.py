"""Upload extracts (ops): choose the kind from ranked guesses, map the columns once, see every rejected
value, the duplicates and the load's impact, then load exactly what was checked."""

import streamlit as st

from cxdash.ui import ops, opsview
from cxdash.ui.formatting import count, label, plain
from cxdash.ui.frame import page_guard

page_guard(__file__)

st.title("Upload extracts")
st.caption(
    "Load a department's CSV export (also .csv.gz or .xlsx). Map its columns once: the mapping is "
    "remembered for the source, so next week's file loads without clicks. Nothing is stored until you choose."
)

files = st.file_uploader(
    "Extract files", type=["csv", "gz", "txt", "tsv", "xlsx"], accept_multiple_files=True, key=ops.uploader_key()
)
if not files:
    st.session_state.pop(ops.K_RESULT, None)
    st.info("Drop one or more CSV extracts here to start.")
    st.stop()

names = [f.name for f in files]
chosen = st.selectbox("File", names, key="upload_chosen") if len(files) > 1 else names[0]
uploaded = files[names.index(chosen)]
token = f"{uploaded.file_id}"
finished = st.session_state.get(ops.K_RESULT)
if finished and finished[0] == token:
    # This file is loaded: what happened, and the way to the next file (no Load button to press twice).
    ops.render_loaded(finished[1])
    st.stop()
if st.session_state.get(ops.K_FILE, (None,))[0] != token:
    ops.discard(st.session_state.get(ops.K_FILE, (None, None))[1])
    try:
        staged = ops.stage_upload(uploaded)
    except ops.ExtractError as exc:
        st.error("This file cannot be read:")
        st.text(str(exc))
        st.stop()
    st.session_state[ops.K_FILE] = (token, staged)
    st.session_state.pop(ops.K_REPORT, None)
    st.session_state.pop(ops.K_RESULT, None)
staged = st.session_state[ops.K_FILE][1]

st.text(f"{staged.display_name}: {len(staged.header)} columns, read as {staged.fmt.describe()}.")

known = ops.known_sources()
source = st.text_input(
    "Source name",
    value=ops.default_source_name(staged.display_name, list(known["name"])),
    key=f"upload_source_{token}",
    help="One name per export (crm, helpdesk, billing...). Existing sources: "
    + (", ".join(plain(n) for n in known["name"]) or "none"),
).strip()

saved = ops.saved_for(staged, source)
guesses = staged.guesses or []
ranked = [g.kind for g in guesses] or ops.kind_names()
st.subheader("What kind of extract is this?")
if saved is not None:
    st.caption(
        f"Source '{plain(source)}' has a saved mapping of kind {saved.kind} (its earlier choice): it is used unless "
        "you choose another kind."
    )
    default_index = ranked.index(saved.kind)
else:
    best = guesses[0] if guesses else None
    if best is not None and best.confidence == "clear":
        st.caption(
            f"Best guess: {best.kind}, clearly ahead of the others. Check the evidence and choose the kind: "
            "nothing is checked or loaded until you do."
        )
    else:
        st.caption(
            "No kind is clearly right for this file. Read the evidence for each and choose the kind: "
            "nothing is checked or loaded until you do."
        )
    default_index = None
ops.render_guesses(guesses)
labels = {g.kind: f"{g.kind} ({ops.HOW_SURE[g.confidence]})" for g in guesses}
kind = st.selectbox(
    "Kind of extract",
    ranked,
    index=default_index,
    key=f"upload_kind_{token}_{source}",
    format_func=lambda k: labels.get(k, k),
    placeholder="Choose the kind of this extract",
)
if kind is None:
    st.info("Choose the kind of extract above to map its columns.")
    st.stop()
mapping0, found_by = ops.initial_mapping(staged, source, kind)

st.subheader("Map the columns")
st.caption("Fields marked * are required. Columns you leave unmapped are kept as attributes, not dropped.")
options = [ops.NOT_MAPPED, *staged.header]
chosen_columns = {}
grid = st.columns(3)
for i, field in enumerate(ops.kind_fields(kind)):
    current = mapping0.columns.get(field.name)
    pick = grid[i % 3].selectbox(
        ops.field_label(field),
        options,
        index=options.index(current) if current in options else 0,
        key=f"upload_map_{token}_{source}_{kind}_{field.name}",
        help=ops.field_help(field),
    )
    if pick != ops.NOT_MAPPED:
        chosen_columns[field.name] = pick
ids = [f.name for f in ops.kind_fields(kind) if f.name in ops.IDENTITY_FIELDS]
has_id = not ids or any(f in chosen_columns for f in ids)

# Links: columns whose values are keys of a loaded source (a usage log's subscription_id).
saved_links = mapping0.links if mapping0.kind == kind else {}
choices = ops.link_choices(staged, source, saved_links)
ticked = []
if choices:
    st.subheader("Links to loaded sources")
    st.caption(
        "These columns hold keys of a source already loaded: a row without a customer identifier of its own "
        "reaches the customer of the row it links to (a row with an identifier keeps its own). A link never "
        "merges two customers: a key shared by several customers leaves its rows unmatched. Match rates are "
        f"measured on the first {ops.sample_rows(staged):,} rows read (all of them when the file is that short)."
    )
    if saved_links:
        st.caption(f"Links saved for source '{plain(source)}' are ticked (its earlier choice).")
    elif has_id:
        st.caption(
            "A customer identifier is mapped, so no link is ticked for you: tick one only for rows that lack "
            "the identifier."
        )
    else:
        st.caption(
            "No customer identifier is mapped, so the suggested links whose column name says what it holds are "
            "ticked: without one, the file's rows could reach no customer. A column whose values match by chance "
            "(a count equal to numeric ticket ids) is left for you to tick. Untick a link you do not trust."
        )
    for i, s in enumerate(choices, 1):
        box_key = f"upload_link_{token}_{source}_{kind}_{s.column}_{s.source}_{s.field}"
        if box_key not in st.session_state:  # the default is set once: later clicks are the user's
            st.session_state[box_key] = s.column in saved_links or (
                not saved_links and not has_id and ops.link_names_agree(s.column, s.field)
            )
        # a widget label renders markdown: the source name (escaped) and our field; the file's column
        # name is shown underneath as plain text
        if st.checkbox(f"Link {i}: to the {plain(ops.link_target(s))}", key=box_key):
            ticked.append(s)
        st.text(f"    {ops.link_label(s, ops.sample_rows(staged))}")
        if not ops.link_names_agree(s.column, s.field):
            st.caption(f"The column's name does not say it holds a {label(s.field)}: its values may match by chance.")
links = {}
for s in ticked:
    links.setdefault(s.column, {"source": s.source, "field": s.field})  # one target per column
doubled = sorted({s.column for s in ticked if links[s.column] != {"source": s.source, "field": s.field}})
if doubled:
    st.warning(
        "A column can link to one source only: the first ticked link of these columns (listed first) "
        "is used. Untick the other to make the choice yours."
    )
    st.text(", ".join(doubled))
mapping = ops.make_mapping(kind, chosen_columns, links)
if not has_id and links:
    st.info(
        f"No column is mapped to a customer identifier of {kind} ({', '.join(map(label, ids))}): the rows reach their "
        "customer only through the ticked link."
    )
elif not has_id:
    fix = "Tick a link above, map" if choices else "Map"
    st.warning(
        f"No column is mapped to a customer identifier of {kind} ({', '.join(map(label, ids))}) and no link is "
        f"ticked: the check will refuse the file. {fix} the column that names the customer, or choose another kind."
    )
    others = {c: f for c, f in ops.identifier_columns(staged).items() if f not in ids}
    if others:
        st.text(
            f"Identifier columns in the file that {kind} do not take: "
            + ", ".join(f"{c!r} ({label(f)})" for c, f in others.items())
        )
    if not choices:
        st.caption(
            "No column of this file holds keys of a loaded source (subscription, ticket, transaction, opportunity "
            "or case ids), so no link can be offered."
        )
st.markdown("**Mapping used**, field by field, and how each column was found")
table = ops.mapping_table(kind, chosen_columns, mapping0, found_by, [s for s in ticked if s.column in links])
st.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3)

st.subheader("Department and owner")
stored_dept, stored_owner, exists = ops.source_department_owner(source, kind)
c1, c2 = st.columns(2)
options, current = opsview.department_choices(ops.departments(), stored_dept)
choice = c1.selectbox(
    "Department",
    options,
    index=current,
    format_func=opsview.department_choice_words,
    key=f"upload_department_{token}_{source}_{kind}",
    help="Where this source's rows sit on journeys, handoffs and hotspots (unless a row names its own).",
)
typed = ""
if choice == opsview.ANOTHER_DEPARTMENT:
    typed = c1.text_input(
        "The other department's name",
        key=f"upload_new_department_{token}_{source}_{kind}",
        placeholder="for example field service",
        help="Stored lower-case, as the data names departments (support, billing...).",
    )
try:
    department = opsview.department_to_save(choice, typed) or ""
except ValueError as exc:
    c1.info(plain(str(exc.args[0])))
    st.stop()  # nothing can be checked or loaded under a department with no name
owner = c2.text_input(
    "Owner (team or person)",
    value=stored_owner or "",
    key=f"upload_owner_{token}_{source}_{kind}",
    placeholder="none named: the department is shown as the owner",
).strip()
if exists:
    st.caption(
        f"Source '{plain(source)}' is loaded already: these are its stored department and owner. "
        "They can be changed later on Data health."
    )
else:
    st.caption(
        f"A new source starts with its kind's department ({plain(ops.department_name(stored_dept))} for {kind}); "
        "change it if the "
        "file belongs to another team (product usage is 'product', not 'web'). Both can be changed later "
        "on Data health."
    )

with st.expander("Preview (first rows of the file)", expanded=False):
    # an empty cell of the file shows empty (not as the grid's grey "None")
    st.dataframe(staged.preview.head(50).fillna(""), hide_index=True, width="stretch")

mode = st.radio(
    "When this source already has data",
    ["append", "replace"],
    horizontal=True,
    key="upload_mode",
    help="append adds new rows and skips rows already loaded; replace swaps the source's rows in one step.",
)
key = ops.report_key(staged, source, mapping, mode)

if st.button("Check the file", type="primary", key="upload_check"):
    st.session_state.pop(ops.K_RESULT, None)
    try:
        with st.spinner("Validating every row..."):
            st.session_state[ops.K_REPORT] = (key, ops.check(staged, source, mapping, mode=mode))
    except (ops.ExtractError, ops.MappingError, ops.IngestError, ops.LinkError) as exc:
        st.session_state.pop(ops.K_REPORT, None)
        st.error("The file cannot be checked with this mapping:")
        st.text(str(exc))  # quotes the file's columns: plain text
        if choices and not has_id and not links:
            st.info("On this page, a link is declared by ticking it under 'Links to loaded sources'.")

report = st.session_state.get(ops.K_REPORT)
if report and report[0] != key:
    st.warning(
        "The file, source name, kind, mapping, links or mode changed since the last check: check the file again "
        "before loading."
    )
elif report:
    result = report[1]
    ops.render_report(result, staged)
    go, accept_invalid = False, False
    if result.refused:
        st.info("Nothing can be loaded from this file as it is: choose another kind or fix the file.")
    elif result.rows_rejected:
        c1, c2 = st.columns(2)
        go = c1.button(
            f"Load the {result.rows_valid:,} valid rows, quarantine {result.rows_rejected:,}", key="upload_go_partial"
        )
        accept_invalid = go
        if c2.button("Load nothing", key="upload_cancel"):
            st.session_state.pop(ops.K_REPORT, None)
            st.info("Nothing was loaded. Fix the file and upload it again.")
            st.stop()
    else:
        go = st.button(
            f"Load {count(result.rows_valid, 'row')} into '{plain(source)}'", type="primary", key="upload_go"
        )
    if go:
        bar = st.progress(0.0, "starting")
        try:
            done = ops.load(
                staged,
                source,
                mapping,
                mode=mode,
                accept_invalid=accept_invalid,
                progress=bar.progress,
                department=department or None,
                owner=owner or None,
            )
        except (ops.ExtractError, ops.MappingError, ops.IngestError, ops.LinkError) as exc:
            st.error("Nothing was stored:")
            st.text(str(exc))
        else:
            st.session_state[ops.K_RESULT] = (token, done)
            st.session_state.pop(ops.K_REPORT, None)
            ops.discard(staged)
            st.session_state.pop(ops.K_FILE, None)
            st.rerun()  # redraw without the check and the Load buttons: the file is loaded
