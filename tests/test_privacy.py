"""Masking by role, small-group suppression, marketing consent and the secret salt."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from cxdash.governance import privacy
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.store import suppression


def test_masks_keep_only_what_a_reader_needs():
    assert privacy.mask_email("ann.lee@example.com") == "a***@example.com"
    assert privacy.mask_email("  Bo@Shop.co.uk ") == "B***@Shop.co.uk"
    assert privacy.mask_email("not-an-email") == "[12 characters hidden]"
    assert privacy.mask_phone("+44 20 7946 0958") == "***58"
    assert privacy.mask_phone("7") == "***"
    assert privacy.mask_name("ann  lee") == "A. L."
    assert privacy.mask_address("1 High Street, Leeds") == "***"
    assert privacy.mask_text("called about card 4111 1111 1111 1111") == "[37 characters hidden]"
    for f in (privacy.mask_email, privacy.mask_phone, privacy.mask_name, privacy.mask_text):
        assert f(None) is None and f("") == ""


FRAME = pd.DataFrame(
    {
        "customer_id": ["CUS-1", "CUS-2"],
        "name": ["Ann Lee", "Bo Chan"],
        "Requester Email": ["ann@x.com", "bo@y.org"],
        "phone": ["555-0101", None],
        "notes": ["angry about the bill", ""],
        "risk": [0.9, 0.1],
        "email_count": [3, 4],
    }
)


@pytest.mark.parametrize("role", ["agent", "admin"])
def test_agents_and_admins_see_personal_fields(role):
    pd.testing.assert_frame_equal(privacy.mask_frame(FRAME, role), FRAME)


@pytest.mark.parametrize("role", ["executive", "journey_owner", "ops", None])
def test_every_other_role_sees_masks(role):
    out = privacy.mask_frame(FRAME, role)
    assert out["name"].tolist() == ["A. L.", "B. C."]
    assert out["Requester Email"].tolist() == ["a***@x.com", "b***@y.org"]
    assert out["phone"].iloc[0] == "***01" and pd.isna(out["phone"].iloc[1])
    assert out["notes"].iloc[0] == "[20 characters hidden]"
    # Keys and figures are not personal data and stay as they were.
    pd.testing.assert_frame_equal(
        out[["customer_id", "risk", "email_count"]], FRAME[["customer_id", "risk", "email_count"]]
    )
    assert FRAME["name"].iloc[0] == "Ann Lee"  # the caller's frame is untouched


GROUPS = pd.DataFrame({"segment": ["a", "b", "c"], "customers": [3, 10, 25], "churn_rate": [1.0, 0.2, 0.12]})


def test_k_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("CXDASH_MIN_GROUP_SIZE", "11")
    assert privacy.min_group_size() == 11
    assert privacy.small_groups(GROUPS, privacy.min_group_size()).shown["segment"].tolist() == ["c"]
    monkeypatch.setenv("CXDASH_MIN_GROUP_SIZE", "3")
    assert privacy.small_groups(GROUPS, privacy.min_group_size()).shown["segment"].tolist() == ["a", "b", "c"]
    monkeypatch.setenv("CXDASH_MIN_GROUP_SIZE", "ten")
    assert privacy.min_group_size() == privacy.DEFAULT_MIN_GROUP_SIZE


def test_a_small_group_keeps_its_label_and_says_it_is_suppressed():
    g = privacy.small_groups(GROUPS, 10, what="segments")
    table = g.blank(keep=["segment"])
    assert table["segment"].tolist() == ["a", "b", "c"]
    assert pd.isna(table.loc[0, "customers"]) and pd.isna(table.loc[0, "churn_rate"])
    assert table["suppression"].tolist() == ["suppressed: fewer than 10 customers", "", ""]
    assert table.loc[2, "customers"] == 25 and table.loc[2, "churn_rate"] == pytest.approx(0.12)
    assert g.shown["segment"].tolist() == ["b", "c"]
    assert g.note == "Suppressed (fewer than 10 customers each): 1 of 3 segments."


def test_roles_that_see_individuals_get_every_figure():
    assert not privacy.hides_small_groups("agent") and not privacy.hides_small_groups("admin")
    assert all(privacy.hides_small_groups(r) for r in ("executive", "journey_owner", "ops", None))
    g = privacy.small_groups(GROUPS, None)
    assert g.note is None and g.blank().equals(GROUPS) and g.shown.equals(GROUPS)


def test_an_empty_group_is_not_small_and_any_count_column_can_make_a_row_small():
    months = pd.DataFrame({"month": ["jan", "feb", "mar"], "customers": [50, 40, 0], "active_customers": [30, 4, 0]})
    g = privacy.small_groups(months, 10, count_columns=("customers", "active_customers"))
    assert g.mask.tolist() == [False, True, False]


def test_when_one_group_of_a_partition_is_small_the_next_smallest_is_hidden_too():
    # Published total 3 + 10 + 25 = 38: hiding only "a" would leave 38 - 10 - 25 = 3 in plain sight.
    g = privacy.small_groups(GROUPS, 10, what="segments", disjoint=True)
    assert g.mask.tolist() == [True, True, False]
    assert g.blank()["suppression"].iloc[1].startswith("suppressed: with the total")
    assert g.note == (
        "Suppressed (fewer than 10 customers each): 1 of 3 segments, and 1 more so that the total "
        "cannot give the small one away (together 13 customers)."
    )


def test_a_funnel_segment_is_as_big_as_its_entry_step():
    funnel = pd.DataFrame(
        {"segment": ["x", "x", "y", "y", "z", "z"], "step": [1, 2] * 3, "customers": [20, 5, 4, 1, 30, 10]}
    )
    g = privacy.small_groups(funnel, 10, by="segment", what="segments")
    # x converts only 5 at step 2, but its group (20 who entered) is big enough; y (4) is not.
    assert g.mask.tolist() == [False, False, True, True, False, False]
    assert g.note == "Suppressed (fewer than 10 customers each): 1 of 3 segments."


def test_rare_journeys_are_pooled_into_one_row_with_their_combined_count():
    variants = pd.DataFrame(
        {
            "variant": ["a > b", "a > c", "a > d", "b"],
            "customers": [50, 3, 2, 9],
            "share": [0.78125, 0.046875, 0.03125, 0.140625],
        }
    )
    out = privacy.small_groups(variants, 10, what="journeys", disjoint=True).pooled(
        "variant", "rarer journeys", sum_columns=("share",)
    )
    assert out["variant"].tolist() == ["a > b", "(3 rarer journeys suppressed)"]
    assert out["customers"].tolist() == [50, 14] and out["share"].iloc[1] == pytest.approx(14 / 64)
    # Two rare journeys of 3 and 2 customers: their total (5) would be a small group itself.
    out = privacy.small_groups(variants.iloc[:3], 10, disjoint=True).pooled("variant", "rarer journeys")
    assert pd.isna(out["customers"].iloc[1])


def test_an_export_says_what_it_holds():
    frame = pd.DataFrame({"cx_id": ["C1"], "email": ["a***@x.com"], "phone": ["***12"], "name": ["Ann Lee"]})
    text = privacy.describe_export(
        frame, what="customers in the hotspot", masked=("email", "phone"), consent_left_out=3
    )
    assert text == (
        "1 rows: customers in the hotspot. Masked: email, phone. Personal fields in full: name. "
        "Only customers with marketing consent: 3 without it left out."
    )
    text = privacy.describe_export(frame[["cx_id"]], what="ids")
    assert text == "1 rows: ids. No personal fields (names, emails, phones, addresses)."


def _load_customers(store, tmp_path, name, rows):
    path = tmp_path / f"{name}.csv"
    pd.DataFrame(rows, columns=["id", "email", "consent"]).to_csv(path, index=False)
    mapping = Mapping.from_dict(
        {"kind": "customers", "columns": {"customer_id": "id", "email": "email", "consent_marketing": "consent"}}
    )
    ingest_file(store, path, source=name, mapping=mapping)


def test_only_customers_who_said_yes_everywhere_are_in_a_marketing_export(store, tmp_path):
    _load_customers(
        store,
        tmp_path,
        "crm",
        [
            ["C1", "a@x.com", "yes"],
            ["C2", "b@x.com", "no"],
            ["C3", "c@x.com", ""],
            ["C4", "d@x.com", "true"],
        ],
    )
    # A second CRM says C4 withdrew consent: one "no" is enough to leave them out.
    _load_customers(store, tmp_path, "shop", [["C4", "d@x.com", "false"], ["C5", "e@x.com", "1"]])
    with store.connect() as conn:
        assert privacy.consented_customers(conn) == {"C1", "C5"}
        frame = pd.DataFrame({"cx_id": ["C1", "C2", "C3", "C4", "C5"], "risk": [0.1, 0.2, 0.3, 0.4, 0.5]})
        out, left_out = privacy.keep_consented(frame, privacy.consented_customers(conn))
    assert out["cx_id"].tolist() == ["C1", "C5"]
    assert left_out == 3


def test_the_salt_comes_from_the_environment_else_a_private_generated_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CXDASH_SECRET_SALT", "from-env")
    assert privacy.secret_salt() == b"from-env"
    monkeypatch.delenv("CXDASH_SECRET_SALT")
    monkeypatch.setattr(suppression, "_salt_from_secrets_file", lambda: None)
    monkeypatch.setenv("CXDASH_DATA_DIR", str(tmp_path))
    first = privacy.secret_salt()
    assert len(first) == 64 and privacy.secret_salt() == first
    path = tmp_path / suppression.SALT_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    h = privacy.identifier_hash("email:ann@x.com", first)
    assert len(h) == 64 and "ann" not in h
    assert h != privacy.identifier_hash("email:ann@x.com", b"another salt")


def test_keeping_consented_rows_is_the_same_with_a_set_and_with_the_cached_index():
    frame = pd.DataFrame({"cx_id": ["C1", "C2", None, "C3", "C1", "c1"], "n": range(6)})
    allowed = {"C1", "C3", "C9"}
    by_set, left_set = privacy.keep_consented(frame, allowed)
    by_index, left_index = privacy.keep_consented(frame, pd.Index(sorted(allowed), dtype=object))
    assert by_set["n"].tolist() == by_index["n"].tolist() == [0, 3, 4]  # ids are matched exactly, case included
    assert left_set == left_index == 3  # C2, the row without an id, and c1


_SALT_RACE = """
import os, sys, time
from cxdash.store import suppression
suppression._salt_from_secrets_file = lambda: None
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
print(suppression.secret_salt().decode())
"""


def test_processes_making_the_salt_at_once_all_read_the_same_whole_one(tmp_path):
    """Several processes that find no salt file at the same moment end with one salt, never an empty
    or half-written one, and no temporary file is left beside it."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "CXDASH_SECRET_SALT"}
    env |= {"CXDASH_DATA_DIR": str(tmp_path), "PYTHONPATH": str(repo)}
    start = time.time() + 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SALT_RACE, str(start)], env=env, stdout=subprocess.PIPE, text=True, cwd=repo
        )
        for _ in range(6)
    ]
    salts = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(salts) == 1 and len(next(iter(salts))) == 64
    assert [f.name for f in tmp_path.iterdir()] == [suppression.SALT_FILE_NAME]


def test_an_empty_salt_file_is_refused_not_used(tmp_path, monkeypatch):
    monkeypatch.delenv("CXDASH_SECRET_SALT", raising=False)
    monkeypatch.setattr(suppression, "_salt_from_secrets_file", lambda: None)
    monkeypatch.setenv("CXDASH_DATA_DIR", str(tmp_path))
    (tmp_path / suppression.SALT_FILE_NAME).write_text("")
    with pytest.raises(RuntimeError, match="empty"):
        suppression.secret_salt()
