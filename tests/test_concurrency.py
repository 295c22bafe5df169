"""A scheduled CLI ingest and a reader (the app) on the same embedded DuckDB file, as two real
processes: the ingest succeeds, the reader never fails, and it sees the old data, then the new."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

READER = textwrap.dedent(
    """
    import json, sys, time, os
    from cxdash.store.database import open_store
    from cxdash.metrics.overview import source_summary
    url, writer_pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store = open_store(url, create=False)
    store.lock_timeout_s = 120
    seen, errors, reads = [], [], 0
    def alive(pid):
        # a finished writer stays a zombie until the test reaps it: that is not alive
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
        except OSError:
            try:
                os.kill(pid, 0)
                return True
            except OSError:
                return False
    deadline = time.time() + 180
    while time.time() < deadline:
        running = alive(writer_pid)
        try:
            with store.connect() as conn:
                seen.append(sorted(source_summary(conn)["name"]))
            reads += 1
        except Exception as exc:
            errors.append(repr(exc))
        if not running:
            break
        time.sleep(0.2)
    json.dump({"seen": seen, "errors": errors, "reads": reads}, open(out, "w"))
    """
)


@pytest.mark.slow
def test_ingest_and_reader_processes_share_the_duckdb_file(tmp_path):
    db = f"duckdb:///{tmp_path / 'shared.duckdb'}"
    setup = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxdash",
            "--db",
            db,
            "demo",
            "--no-train",
            "--customers",
            "300",
            "--out",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert setup.returncode == 0, setup.stderr
    rng = np.random.default_rng(1)
    n = 400_000
    big = pd.DataFrame(
        {
            "user": rng.integers(0, 5000, n).astype(str),
            "at": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 3e7, n), unit="s"),
            "event": rng.choice(["home", "pricing", "login"], n),
        }
    )
    big_path = tmp_path / "big.csv"
    big.to_csv(big_path, index=False)
    mapping = tmp_path / "m.json"
    mapping.write_text(
        json.dumps({"kind": "events", "columns": {"visitor_id": "user", "timestamp": "at", "activity": "event"}})
    )

    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxdash",
            "--db",
            db,
            "ingest",
            str(big_path),
            "--source",
            "app_events",
            "--mapping",
            str(mapping),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = tmp_path / "reader.json"
    reader = subprocess.run(
        [sys.executable, "-c", READER, db, str(writer.pid), str(out)], capture_output=True, text=True, timeout=300
    )
    stdout, stderr = writer.communicate(timeout=300)
    assert writer.returncode == 0, stderr
    assert "loaded 400,000" in stdout
    assert reader.returncode == 0, reader.stderr
    report = json.loads(out.read_text())
    assert report["errors"] == []
    assert report["reads"] >= 2
    before, after = report["seen"][0], report["seen"][-1]
    assert "app_events" not in before  # the reader saw the previous data while the load ran...
    assert "app_events" in after  # ...and the new data once it committed


HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])  # read-write: an exclusive lock on the file, as a load holds it
    con.execute("begin transaction")
    print("locked", flush=True)
    sys.stdin.readline()  # hold it until the test says so
    """
)


@pytest.mark.slow
def test_a_page_opened_while_a_load_holds_the_file_shows_the_previous_data_and_says_so(
    small_demo, tmp_path, monkeypatch
):
    import shutil
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from cxdash.ui import data

    src = Path(small_demo.removeprefix("duckdb:///"))
    db = tmp_path / "busy.duckdb"
    shutil.copy(src, db)
    monkeypatch.setenv("CXDASH_DB_URL", f"duckdb:///{db}")
    app = Path(__file__).resolve().parents[1] / "app.py"  # the frame, as a user's session runs it
    at = AppTest.from_file(str(app), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    before = {m.label: m.value for m in at.metric}
    assert before["Customers"] == "300"
    assert not any("A data load is running" in i.value for i in at.info)

    monkeypatch.setattr(data, "VERSION_REUSE_S", 0.0)  # read the version afresh on the next run
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("A data load is running" in i.value for i in at.info)
        assert {m.label: m.value for m in at.metric} == before  # the previous data, not an error or a blank
    finally:
        holder.stdin.write("done\n")
        holder.stdin.flush()
        holder.wait(timeout=60)
    at.run()  # the load is over: the note goes
    assert not any("A data load is running" in i.value for i in at.info)
