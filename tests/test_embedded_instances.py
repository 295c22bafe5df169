"""One DuckDB instance per file and process (cxdash.store.embedded): every store opened on a file in
one process shares it, threads open and close connections at once without an error, each connection
keeps its own registrations, and the file is free for another process whenever this one has no
connection open."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from cxdash.store.database import StoreLockedError, open_store
from cxdash.store.embedded import _ask, ask_mark, asked_since, open_instances
from cxdash.ui.data import UI_LOCK_TIMEOUT_S

# Another process asks for the file's write lock once and says whether it got it.
OTHER_PROCESS = textwrap.dedent(
    """
    import sys, duckdb
    try:
        duckdb.connect(sys.argv[1]).close()
        print("free")
    except duckdb.IOException as exc:
        print("locked" if "lock" in str(exc).lower() else repr(exc))
    """
)


def _other_process_sees(path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, str(path)], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def test_two_stores_on_one_file_share_one_instance_and_free_the_file_after_the_last_connection(tmp_path):
    path = tmp_path / "one.duckdb"
    first, second = open_store(f"duckdb:///{path}"), open_store(f"duckdb:///{tmp_path}/./one.duckdb", create=False)
    key = str(path.resolve())
    try:
        assert key not in open_instances()
        with first.connect() as a:
            assert open_instances()[key] == 1
            with second.connect() as b:
                assert open_instances()[key] == 2  # the second store's connection is a cursor of the same instance
                b.exec_driver_sql("CREATE TABLE t AS SELECT 1 AS x")
                b.commit()  # on its own connection: the other sees it once committed
                assert a.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
            assert open_instances()[key] == 1
            assert _other_process_sees(path) == "locked"  # one connection open: the instance holds the file
        assert key not in open_instances()
        assert _other_process_sees(path) == "free"  # the last one closed: another process can load
        with first.connect() as a:  # and this process opens it again afterwards
            assert a.exec_driver_sql("SELECT x FROM t").scalar() == 1
        assert key not in open_instances()
    finally:
        first.dispose()
        second.dispose()


def test_a_file_locked_by_another_process_leaves_nothing_open_here(tmp_path):
    path = tmp_path / "held.duckdb"
    open_store(f"duckdb:///{path}").dispose()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); input()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    store = open_store(f"duckdb:///{path}", create=False)
    store.lock_timeout_s = 0.5
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockedError, match="locked by another process"), store.connect():
            pass
        assert str(path.resolve()) not in open_instances()
        holder.communicate("\n", timeout=60)
        with store.connect() as conn:  # once the other process lets go
            assert conn.exec_driver_sql("SELECT 42").scalar() == 42
    finally:
        if holder.poll() is None:
            holder.kill()
        store.dispose()


def test_threads_open_register_and_close_at_once_without_an_error_and_each_sees_its_own_rows(tmp_path):
    """As the upload page and its background refresh do: one thread registers an Arrow table on each
    connection it opens (the refresh's appended steps), others open and close as fast as they can (page
    runs). With DuckDB's own instance per connect, about one registration in a hundred failed here
    ("Table Function with name python_arrow_scan does not exist") and opens met "unique file handle
    conflict"."""
    path = tmp_path / "threads.duckdb"
    store = open_store(f"duckdb:///{path}")
    with store.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t AS SELECT range AS i FROM range(100000)")
    errors: list[str] = []
    wrong: list[tuple[int, int]] = []
    done = threading.Event()

    def register(rounds: int) -> None:
        try:
            for round_ in range(rounds):
                keys = pa.table({"k": list(range(round_ % 7, 200_000, 3))})
                try:
                    with store.connect() as conn:
                        conn.connection.driver_connection.register("cx_keys", keys)
                        got = conn.exec_driver_sql("SELECT count(*) FROM t JOIN cx_keys ON t.i = cx_keys.k").scalar()
                    expected = len(range(round_ % 7, 100_000, 3))
                    if got != expected:
                        wrong.append((round_, got))
                except Exception as exc:  # noqa: BLE001 - every error is collected and asserted on below
                    errors.append(f"registering, round {round_}: {exc!r}")
        finally:
            done.set()

    def open_and_close() -> None:
        while not done.is_set():
            try:
                with store.connect() as conn:
                    conn.exec_driver_sql("SELECT 1").scalar()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"opening: {exc!r}")

    threads = [threading.Thread(target=register, args=(500,))] + [
        threading.Thread(target=open_and_close) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    try:
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert wrong == []  # each registration's own keys were joined
        assert str(path.resolve()) not in open_instances()  # every cursor closed, and the instance with them
        assert _other_process_sees(path) == "free"
    finally:
        store.dispose()


def test_a_registration_does_not_outlive_its_connection(tmp_path):
    store = open_store(f"duckdb:///{tmp_path / 'reg.duckdb'}")
    try:
        with store.connect() as a, store.connect() as b:
            a.connection.driver_connection.register("cx_mine", pa.table({"k": [1, 2, 3]}))
            assert a.exec_driver_sql("SELECT sum(k) FROM cx_mine").scalar() == 6
            with pytest.raises(sa.exc.DBAPIError, match="cx_mine"):  # another connection does not see it
                b.exec_driver_sql("SELECT sum(k) FROM cx_mine").scalar()
        # nor does the next connection after the first closed
        with store.connect() as c, pytest.raises(sa.exc.DBAPIError, match="cx_mine"):
            c.exec_driver_sql("SELECT sum(k) FROM cx_mine").scalar()
    finally:
        store.dispose()


# Another process reads the file through a store, waiting (retrying) while this one holds it.
WAITING_READER = textwrap.dedent(
    """
    import sys
    from cxdash.store.database import open_store
    store = open_store(sys.argv[1], create=False)
    store.lock_timeout_s = 60
    with store.connect() as conn:
        print(conn.exec_driver_sql("SELECT answer FROM t").scalar(), flush=True)
    """
)


def test_the_refresh_keeps_its_connection_until_another_process_asks_for_the_file(tmp_path, monkeypatch):
    """The summaries refresh holds one connection across its summaries while no other process waits
    (it used to close the file every second in case one did), and lets go at the next summary once
    a process has found the file locked."""
    from cxdash.jobs import summaries

    path = tmp_path / "asked.duckdb"
    url = f"duckdb:///{path}"
    file = str(path.resolve())
    store = open_store(url)
    with store.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t AS SELECT 42 AS answer")
    assert 1.0 < summaries._FILE_HOLD_SECONDS < UI_LOCK_TIMEOUT_S  # a page that cannot ask still gets in
    held = summaries._HeldConnection(store)
    reader = None
    try:
        with held() as first:
            assert first.exec_driver_sql("SELECT answer FROM t").scalar() == 42
        time.sleep(1.2)  # longer than the second the refresh used to keep a connection
        with held() as again:
            assert again is first
        held.close()
        # from here the hold's own clock is out of the way: only the ask lets the connection go
        monkeypatch.setattr(summaries, "_FILE_HOLD_SECONDS", 60.0)
        held = summaries._HeldConnection(store)
        with held() as first:
            pass
        mark = ask_mark(file)
        reader = subprocess.Popen(
            [sys.executable, "-c", WAITING_READER, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while not asked_since(file, mark):
            assert reader.poll() is None, reader.communicate()
            assert time.monotonic() < deadline, "the other process never said it waits"
            time.sleep(0.05)
        # the summaries go on; the reader gets in at the next one, while the refresh pauses (or at
        # a later one, on a machine too busy for the reader to try within the pause)
        connections = set()
        for _ in range(40):
            with held() as conn:
                connections.add(id(conn))
                assert conn.exec_driver_sql("SELECT answer FROM t").scalar() == 42
            if reader.poll() is not None:
                break
            time.sleep(0.05)
        assert reader.poll() == 0, reader.communicate()
        assert reader.communicate()[0].strip() == "42"
        assert id(first) not in connections
    finally:
        held.close()
        if reader is not None and reader.poll() is None:
            reader.kill()
        store.dispose()
    assert str(path.resolve()) not in open_instances()


def test_a_process_asks_for_a_file_whose_ask_it_may_not_touch(tmp_path, monkeypatch):
    """Two users sharing a store: the ask is the other user's file, which this one may not touch
    (both write the folder, as DuckDB's log needs); a new file takes its place."""
    file = str((tmp_path / "shared.duckdb").resolve())
    assert ask_mark(file) is None
    _ask(file)
    mark = ask_mark(file)
    assert mark is not None and not asked_since(file, mark)

    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "touch", refused)
    _ask(file)
    assert asked_since(file, mark)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.duckdb.wanted"]  # no file left behind
