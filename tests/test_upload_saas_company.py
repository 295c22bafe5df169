"""The hand-built five-table SaaS company (tests/saas_company.py) loaded through the upload page,
file by file, as an ops person would: choose each kind, fix a mapping in its selectbox, tick the
link the page suggests for the usage log (keyed only by subscription id), give the usage source
its department and owner. Expected figures are computed from the generated frames with pandas,
not read from cxdash.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from cxdash.governance.sources import source_owners
from cxdash.jobs import summaries
from cxdash.metrics import churn
from cxdash.metrics.timeline import timeline
from cxdash.store.database import KIND_TABLES, open_store
from tests import saas_company
from tests.conftest import REPO

PAGE = str(REPO / "pages" / "upload.py")


@pytest.fixture(scope="module")
def company(tmp_path_factory):
    root = tmp_path_factory.mktemp("saas_upload")
    built = saas_company.build()
    return {"frames": built, "files": built.write(root / "exports"), "root": root}


def _texts(at: AppTest) -> str:
    return "\n".join(t.value for t in at.text)


def _upload(name: str, path, kind: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    at.file_uploader(key="upload_files").upload(name, path.read_bytes(), "text/csv")
    at.run()
    # the sources are named as the files are (the page offers "Churn events" for churn_events.csv)
    next(t for t in at.text_input if t.label == "Source name").input(Path(name).stem).run()
    next(s for s in at.selectbox if s.label == "Kind of extract").select(kind).run()
    assert not at.exception, at.exception
    return at


def _check_and_load(at: AppTest) -> AppTest:
    at.button(key="upload_check").click().run()
    assert not at.exception, at.exception
    go = [b for b in at.button if b.label.startswith("Load ") and "valid rows" not in b.label]
    assert go, _texts(at) + " ".join(e.value for e in at.error)
    go[0].click().run()
    assert not at.exception, "\n".join(at.exception[0].stack)
    assert any(" rows loaded into " in s.value for s in at.success), " ".join(e.value for e in at.error)
    # the load hands the default views to a background thread: the next session's store waits for it
    summaries.wait_for_background(timeout=600)
    return at


def _rows_per_source(url: str) -> dict[str, int]:
    store = open_store(url)
    out: dict[str, int] = {}
    with store.connect() as conn:
        for t in KIND_TABLES.values():
            for source, n in conn.execute(sa.select(t.c.source, sa.func.count()).group_by(t.c.source)):
                out[source] = int(n)
    store.dispose()
    return out


@pytest.mark.slow
def test_the_five_saas_tables_load_through_the_page_and_usage_reaches_accounts_through_its_link(db, company):
    frames, files = company["frames"], company["files"]

    at = _upload("accounts.csv", files["accounts"], "customers")
    assert not at.checkbox  # nothing is loaded yet: no key to link to
    _check_and_load(at)

    _check_and_load(_upload("subscriptions.csv", files["subscriptions"], "subscriptions"))

    at = _upload("tickets.csv", files["tickets"], "tickets")
    # the guess leaves the topic unmapped; the ops person maps the priority to it
    next(s for s in at.selectbox if s.label == "topic").select("priority").run()
    table = next(d.value for d in at.dataframe if "found by" in d.value.columns).set_index("stored as")
    assert table.loc["topic", ["column", "found by"]].tolist() == ["priority", "chosen by you"]
    _check_and_load(at)

    _check_and_load(_upload("churn_events.csv", files["churn_events"], "churn"))

    at = _upload("usage.csv", files["usage"], "events")
    usage, subs = frames.usage, frames.subscriptions
    in_subs = usage["subscription_id"].isin(subs["subscription_id"])
    # the page offers the link with its match rate, ticked because no identifier is mapped
    box = next(c for c in at.checkbox if c.label == "Link 1: to the subscription id of subscriptions")
    assert box.value is True
    assert (
        "no customer identifier is mapped, so the suggested links whose column name says what it holds are "
        "ticked" in " ".join(c.value for c in at.caption).lower()
    )
    assert (
        f"column 'subscription_id': {int(in_subs.sum()):,} of the {len(usage):,} rows with a value hold a "
        f"subscription id of subscriptions ({in_subs.mean():.0%})"
    ) in _texts(at)
    table = next(d.value for d in at.dataframe if "found by" in d.value.columns).set_index("stored as")
    assert table.loc["link -> subscriptions.subscription_id", "column"] == "subscription_id"
    # the department and owner the usage log belongs to (events start as "web")
    department = next(s for s in at.selectbox if s.label == "Department")
    assert department.value == "web"
    department.set_value("product")
    next(t for t in at.text_input if t.label == "Owner (team or person)").input("Product analytics")
    at.run()
    assert "can be changed later on Data health" in " ".join(c.value for c in at.caption)
    at.button(key="upload_check").click().run()
    assert (
        f"column 'subscription_id' -> subscriptions: {int(in_subs.sum()):,} of the "
        f"{len(usage):,} rows with a value (in the first block read) hold a subscription id of subscriptions "
        f"({in_subs.mean():.0%})."
    ) in _texts(at)
    next(b for b in at.button if b.label.startswith(f"Load {len(usage):,} rows")).click().run()
    assert not at.exception
    summaries.wait_for_background(timeout=600)
    after = _texts(at)
    assert "Department: Product (product); owner: Product analytics (change them on Data health)." in after
    assert (
        f"{len(usage):,} rows have no customer identifier of their own and rely on the link to "
        "subscriptions (subscription id):"
    ) in after
    assert f"  {int(in_subs.sum()):,} reached a customer;" in after
    assert f"  {int((~in_subs).sum()):,} carry a key that subscriptions (subscription id) does not hold" in after

    # rows stored per table, as the files hold them (every key is unique in these exports)
    assert _rows_per_source(db) == {
        "accounts": len(frames.accounts),
        "subscriptions": len(subs),
        "tickets": len(frames.tickets),
        "churn_events": len(frames.churn_events),
        "usage": len(usage),
    }

    store = open_store(db)
    with store.connect() as conn:
        ev, crm = KIND_TABLES["events"], KIND_TABLES["customers"]
        usage_rows = pd.DataFrame(
            [tuple(r) for r in conn.execute(sa.select(ev.c.row_number, ev.c.cx_key).where(ev.c.source == "usage"))],
            columns=["row_number", "cx_key"],
        ).set_index("row_number")["cx_key"]
        account_key = {
            a: k for a, k in conn.execute(sa.select(crm.c.account_id, crm.c.cx_key).where(crm.c.source == "accounts"))
        }
        cands = {c.name: c for c in churn.candidates(conn)}
        owners = source_owners(conn).set_index("name")
        tl = timeline(("source", "department"))
        usage_departments = conn.execute(
            sa.select(tl.c.department, sa.func.count()).where(tl.c.source == "usage").group_by(tl.c.department)
        ).fetchall()
    store.dispose()

    # the usage rows that reached an account are exactly those whose subscription is in the extract,
    # each at the account that subscription belongs to (row_number: the file line, header = line 1)
    account_of_line = usage.merge(subs[["subscription_id", "account_id"]], on="subscription_id", how="left")[
        "account_id"
    ].set_axis(usage.index + 2)
    assert int(usage_rows.notna().sum()) == int(in_subs.sum())
    expected_keys = account_of_line.map(account_key)
    assert usage_rows.sort_index().astype("Int64").tolist() == expected_keys.sort_index().astype("Int64").tolist()

    # churn definitions offered after the load, with figures counted here
    accounts = frames.accounts
    flagged = int((accounts["churn_flag"] == "True").sum())
    label = cands["label:accounts"]
    assert (label.customers, label.churned) == (len(accounts), flagged) == (200, 44)
    assert label.rate == pytest.approx(0.22)
    open_subs = subs.groupby("account_id")["end_date"].apply(lambda s: s.isna().any())
    subscriptions = cands["subscriptions"]
    assert subscriptions.churned == int((~open_subs).sum()) == 0
    events = cands["events:churn_events"]
    churned_accounts = frames.churn_events["account_id"].nunique()
    assert (events.customers, events.churned) == (len(accounts), churned_accounts) == (200, 48)

    # the department and owner given at upload are stored, and the timeline places usage in product
    assert owners.loc["usage", ["department", "owner"]].tolist() == ["product", "Product analytics"]
    assert owners.loc["tickets", ["department", "owner"]].tolist() == ["support", "support"]  # the kind's
    assert dict(usage_departments) == {"product": len(usage)}
