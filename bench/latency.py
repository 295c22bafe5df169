"""Benchmark steps for what a user waits for around a load (issue 17): the whole ``python -m
cxdash ingest`` command, the CLI's start-up, and a one-row append's way to the customer card.

Each function is a step of ``bench.steps`` (run in its own process) and returns one JSON-able dict.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

EVENTS_MAPPING = {
    "kind": "events",
    "columns": {
        "customer_id": "user_id",
        "timestamp": "event_time",
        "activity": "event_name",
        "case_id": "session",
        "channel": "device",
    },
}


def _cli(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``python -m cxdash ARGS`` as a user would; its wall seconds and the finished process."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cxdash", *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"python -m cxdash {' '.join(args[:3])} failed: {proc.stderr.strip()[-500:]}")
    return took, proc


def cli_startup(url: str | None = None) -> dict:
    """The CLI's start-up, the fastest of three runs: ``python -m cxdash --help`` (the
    interpreter and the argument parser) and, given a store's ``url``, ``sources --json`` on it
    (the libraries a command imports and one query: what any command pays before its work)."""
    help_seconds = min(_cli("--help")[0] for _ in range(3))
    out = {"step": "CLI start-up", "help_seconds": help_seconds, "seconds": help_seconds}
    if url:
        out["seconds"] = out["command_seconds"] = min(_cli("--db", url, "sources", "--json")[0] for _ in range(3))
    return out


def ingest_cli(path: str, url: str) -> dict:
    """``python -m cxdash ingest`` of the bench extract into a fresh store, the whole command as
    the user waits for it (reading, validating, writing, stitching and the summaries refresh)."""
    with tempfile.TemporaryDirectory() as tmp:
        mapping = Path(tmp) / "mapping.json"
        mapping.write_text(json.dumps(EVENTS_MAPPING))
        took, _ = _cli("--db", url, "ingest", path, "--source", "bench", "--mapping", str(mapping))
    return {"step": "cxdash ingest (whole command)", "seconds": took}


def ingest_stages(path: str, url: str) -> dict:
    """The same load in process, stage by stage (``IngestResult.timings``), then the summaries
    refresh the CLI runs after it."""
    from cxdash.ingest.load import ingest_file
    from cxdash.ingest.mapping import Mapping
    from cxdash.jobs import after_load
    from cxdash.store.database import open_store

    store = open_store(url)
    t0 = time.perf_counter()
    result = ingest_file(store, path, source="bench", mapping=Mapping.from_dict(EVENTS_MAPPING), chunk_rows=500_000)
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    after_load(store)
    refresh = time.perf_counter() - t1
    return {
        "step": "cxdash ingest stages",
        "size": result.rows_read,
        "rows": result.rows_loaded,
        "seconds": load + refresh,
        "stages": {**result.timings, "summaries refresh": round(refresh, 3)},
    }


def _known_customer(store) -> tuple[str, str]:
    """A CRM customer with an email (cx_id, email), the same for the same store."""
    import sqlalchemy as sa

    from cxdash.store.database import KIND_TABLES

    t = KIND_TABLES["customers"]
    with store.connect() as conn:
        row = conn.execute(
            sa.select(t.c.customer_id, t.c.email)
            .where(t.c.email.is_not(None), t.c.customer_id.is_not(None))
            .order_by(t.c.customer_id)
            .limit(1)
        ).one()
    return row.customer_id, row.email


def append_latency(url: str) -> dict:
    """A one-row append of a cancel-page visit by a known customer (the demo's ``web`` source),
    through the CLI as a user runs it, then the customer card read until the signal is there:
    the signal-to-card seconds. Then one more one-row append in process: its load alone, and
    the summaries refresh after it, to set against a full refresh (``refresh_seconds`` of the
    demo step)."""
    from cxdash.ingest.load import ingest_file
    from cxdash.ingest.mapping import Mapping
    from cxdash.jobs import after_load
    from cxdash.risk import data_as_of, recent_signals
    from cxdash.store.database import open_store

    store = open_store(url)
    cx_id, email = _known_customer(store)
    with store.connect() as conn:
        end = data_as_of(conn)
    header = "cookie_id,user_email,event_time,event_name,session_id,device\n"
    web = {
        "kind": "events",
        "columns": {
            "visitor_id": "cookie_id",
            "email": "user_email",
            "timestamp": "event_time",
            "activity": "event_name",
            "case_id": "session_id",
        },
    }
    out: dict = {"step": "one-row append to the card", "customer": cx_id}
    with tempfile.TemporaryDirectory() as tmp:
        mapping = Path(tmp) / "web.json"
        mapping.write_text(json.dumps(web))
        first = Path(tmp) / "signal.csv"
        when = (end or __import__("datetime").datetime(2026, 10, 31)).replace(microsecond=0)
        first.write_text(header + f"bench-cookie-1,{email},{when:%Y-%m-%d %H:%M:%S},cancel_page,bench-s1,web\n")
        t0 = time.perf_counter()
        cli_seconds, _ = _cli(
            "--db", url, "ingest", str(first), "--source", "web", "--mode", "append", "--mapping", str(mapping)
        )
        with store.connect() as conn:
            seen = recent_signals(conn, cx_id)
        on_card = bool(((seen["signal"] == "cancel_page") & (seen["last_at"] == when)).any())
        out["signal_to_card_seconds"] = time.perf_counter() - t0 if on_card else None
        out["cli_ingest_seconds"] = cli_seconds

        second = Path(tmp) / "again.csv"
        second.write_text(header + f"bench-cookie-2,{email},{when:%Y-%m-%d %H:%M:%S},cancel_page,bench-s2,app\n")
        t1 = time.perf_counter()
        result = ingest_file(store, second, source="web", mode="append", mapping=Mapping.from_dict(web))
        out["append_load_seconds"] = time.perf_counter() - t1
        out["append_stages"] = result.timings
        t2 = time.perf_counter()
        after_load(store)
        out["append_refresh_seconds"] = time.perf_counter() - t2
    out["seconds"] = out["signal_to_card_seconds"] or out["cli_ingest_seconds"]
    return out


# issue 17's limits: the whole ingest command against read_csv, a one-row signal on the card
# against the CLI's start-up, a small append's refresh against a full one
INGEST_CLI_RATIO, SIGNAL_STARTUP_RATIO, APPEND_REFRESH_SHARE = 3.0, 3.0, 0.10


def checks(results: dict) -> list[dict]:
    """One row per issue-17 target measured by these steps: value, limit, pass/fail (None: not measured)."""
    rows = []
    ratio = results.get("ingest_cli_ratio_vs_duckdb_read_csv")
    rows.append(
        {
            "target": "ingest command (whole) / DuckDB read_csv",
            "size": results.get("ingest_rows"),
            "value": ratio,
            "limit": f"<= {INGEST_CLI_RATIO}x",
            "ok": None if ratio is None else ratio <= INGEST_CLI_RATIO,
        }
    )
    for size in results["sizes"]:
        n = size["customers"]
        steps = {s.get("step"): s for s in size["steps"]}
        startup = steps.get("CLI start-up", {}).get("seconds")
        append = steps.get("one-row append to the card", {})
        demo = steps.get("demo generate + load", {})
        card = append.get("signal_to_card_seconds")
        value = round(card / startup, 2) if card and startup else None
        rows.append(
            {
                "target": "one-row signal to card / CLI start-up (sources)",
                "size": n,
                "value": value,
                "limit": f"<= {SIGNAL_STARTUP_RATIO}x",
                "ok": None if value is None else value <= SIGNAL_STARTUP_RATIO,
            }
        )
        full, small = demo.get("summary_seconds"), append.get("append_refresh_seconds")
        share = round(small / full, 2) if full and small is not None else None
        rows.append(
            {
                "target": "refresh after a one-row append / full refresh",
                "size": n,
                "value": share,
                "limit": f"<= {APPEND_REFRESH_SHARE}",
                "ok": None if share is None else share <= APPEND_REFRESH_SHARE,
            }
        )
        for phase, got in (demo.get("phases") or {}).items():
            rows.append(
                {
                    "target": f"peak RSS of the demo's {phase} phase (MB)",
                    "size": n,
                    "value": got["peak_rss_mb"],
                    "limit": "(shown)",
                    "ok": None,
                }
            )
    return rows
