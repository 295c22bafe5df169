"""One DuckDB database instance per file and process, however many threads connect to it.

The app opens short-lived connections (``NullPool``) so that another process can take the file's
write lock between page runs. In one process, though, the upload page's summaries refresh runs on a
thread while the page goes on: two threads then open and close the same file, and DuckDB 2 takes
that badly. A connection opened while another thread closes the file's last one fails ("unique file
handle conflict"); one made from an instance another thread is still starting can miss DuckDB's
Python scan functions ("Table Function with name python_arrow_scan does not exist"); and in CI a
page waited more than 30 s on such an open after an upload.

So a process opens each file once, as a root connection, and every connection the engine asks for
is a cursor of it (``DuckDBPyConnection.cursor()``: a connection of its own, with its own
transactions and registrations, to the same database instance). The root is closed when the last
cursor is, so the file lock is held exactly as long as before: another process can load whenever
this one has no connection open. Opening and closing the root happen under one lock, so no two
threads ever start or stop the instance at once.

A process that finds the file locked by another says so: it touches ``<file>.wanted`` each time it
tries. A process that holds its connection across many short steps (the summaries refresh) notes
that file's mark (inode and time) when it opens (``ask_mark``) and can then keep the connection
while nobody waits, and let go at the next step once someone has asked (``asked_since``: the mark
moved), rather than closing and opening the file every second in case someone might. The mark is
compared with the one noted, never with this machine's clock, so a file server's clock does not
matter.
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from duckdb_engine import ConnectionWrapper
from sqlalchemy.engine import Engine

__all__ = ["ask_mark", "asked_since", "file_of", "is_lock_error", "open_instances", "share_one_instance"]


@dataclass
class _Root:
    """A file's root connection (a ``duckdb.DuckDBPyConnection``) and how many of its cursors are open."""

    conn: Any
    cursors: int = 0


_lock = threading.Lock()
_roots: dict[str, _Root] = {}  # by the file's resolved path


class _Cursor(ConnectionWrapper):
    """A cursor of a file's root connection, as the driver connection SQLAlchemy holds; closing it
    closes the root when it was the file's last."""

    def __init__(self, cursor: Any, path: str) -> None:
        super().__init__(cursor)
        self._path = path

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True  # released once, even when the driver's close fails
        try:
            super().close()
        finally:
            _release(self._path)


def _release(path: str) -> None:
    with _lock:
        held = _roots.get(path)
        if held is None:
            return
        held.cursors -= 1
        if held.cursors > 0:
            return
        del _roots[path]
        held.conn.close()  # the instance ends here: DuckDB writes its log into the file, the lock goes


def is_lock_error(exc: BaseException) -> bool:
    """Whether ``exc`` says another process holds the file (worth waiting for and trying again)."""
    text = str(exc).lower()
    # "unique file handle conflict": DuckDB 2 refuses to open a file while another thread of this
    # process is closing its last connection to it. The engine's connections share one instance,
    # so only a direct ``duckdb.connect`` (compaction) can still meet it: transient like a lock,
    # so retried the same way.
    return (
        "could not set lock" in text
        or "conflicting lock" in text
        or "database is locked" in text
        or "unique file handle conflict" in text
    )


def _wanted(path: str) -> Path:
    return Path(path + ".wanted")


def _ask(path: str) -> None:
    """Tell the process holding ``path`` that this one waits for it (``asked_since``)."""
    wanted = _wanted(path)
    try:
        wanted.touch()
    except OSError:
        # another user's file (both write the folder, as DuckDB's log needs): a new one in its place
        try:
            fd, fresh = tempfile.mkstemp(dir=wanted.parent, prefix=wanted.name + ".")
        except OSError:  # a folder this process cannot write: the holder lets go on its own clock
            return
        os.close(fd)
        try:
            os.replace(fresh, wanted)
        except OSError:
            Path(fresh).unlink(missing_ok=True)


def ask_mark(path: str) -> tuple[int, int] | None:
    """The last ask for ``path`` (the file's inode and time, as its file system gives them), None
    before any."""
    try:
        found = _wanted(path).stat()
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns


def asked_since(path: str, mark: tuple[int, int] | None) -> bool:
    """Whether another process has asked for ``path`` since ``ask_mark`` gave ``mark``."""
    now = ask_mark(path)
    return now is not None and now != mark


def file_of(engine: Engine) -> str | None:
    """The resolved path of ``engine``'s DuckDB file; None for other engines and in-memory DuckDB."""
    if engine.dialect.name != "duckdb":
        return None
    database = engine.url.database
    if not database or database.startswith(":memory:"):
        return None
    return str(Path(database).resolve())


def _connect(dialect: Any, cargs: tuple, cparams: dict) -> _Cursor:
    path = str(Path(cparams["database"]).resolve())
    with _lock:
        held = _roots.get(path)
        if held is None:
            # the driver's own connect (its configuration and user agent); it may fail on another
            # process's lock, and the caller's retry (Store._retrying) sees the driver's error
            try:
                root = dialect.connect(*cargs, **copy.deepcopy(cparams))
            except Exception as exc:
                if is_lock_error(exc):
                    _ask(path)
                raise
            held = _roots[path] = _Root(_driver(root))
        try:
            cursor = held.conn.cursor()
        except BaseException:
            if held.cursors == 0:
                del _roots[path]
                held.conn.close()
            raise
        held.cursors += 1
    return _Cursor(cursor, path)


def _driver(wrapper: ConnectionWrapper) -> Any:
    """The ``duckdb.DuckDBPyConnection`` inside duckdb_engine's wrapper (its ``cursor()`` gives the
    wrapper's own cursor type, which shares the connection rather than opening one)."""
    return wrapper._ConnectionWrapper__c  # the wrapper keeps it private


def share_one_instance(engine: Engine) -> None:
    """Make every connection ``engine`` opens to its DuckDB file a cursor of the process's one root
    connection to that file (see the module's text). For file databases only."""

    @sa.event.listens_for(engine, "do_connect")
    def _shared(dialect, _record, cargs, cparams):
        return _connect(dialect, cargs, cparams)


def open_instances() -> dict[str, int]:
    """``{file: open cursors}`` for the files this process holds open now (for tests and diagnosis)."""
    with _lock:
        return {path: held.cursors for path, held in _roots.items()}


def _forget_after_fork() -> None:
    # a forked child must not close or use its parent's connections: it opens its own
    _roots.clear()
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
