"""Administration commands: ``sources``, ``users``, ``erase``, ``compact``, ``migrate``."""

from __future__ import annotations

import json
import sys

from cxdash.cli.common import cli_actor, jsonable, store_of
from cxdash.governance import auth
from cxdash.governance.erasure import erase_customer
from cxdash.governance.health import governance
from cxdash.governance.sources import department_name
from cxdash.jobs import change_source_owner, summaries, upgrade_store
from cxdash.store.compaction import compact_duckdb_file
from cxdash.store.database import open_store
from cxdash.store.version import data_version

__all__ = ["cmd_compact", "cmd_erase", "cmd_migrate", "cmd_sources", "cmd_users"]


def cmd_sources(args) -> int:
    if getattr(args, "action", None) == "set":
        return cmd_sources_set(args)

    store = store_of(args)
    with store.connect() as conn:
        # the stored summaries of this data version when there are (a full scan each at 1M customers)
        version = data_version(conn)
        frame = summaries.get(conn, "source_summary", version)
        gov = governance(
            conn,
            stats=summaries.get(conn, "source_stats", version),
            latency=summaries.get(conn, "source_latency", version),
        )
    if len(frame):
        extra = [
            "owner",
            "quality",
            "freshness_hours",
            "latency_p50_hours",
            "latency_p95_hours",
            "latency_target_hours",
            "stitched_share",
            "duplicate_keys",
        ]
        frame = frame.merge(gov[["name", *extra]], on="name", how="left")
    records = [{k: jsonable(v) for k, v in rec.items()} for rec in frame.astype(object).to_dict("records")]
    if args.json:
        print(json.dumps(records, indent=2, default=str))
    else:
        print(frame.to_string(index=False) if len(frame) else "No sources loaded yet.")
    return 0


def cmd_sources_set(args) -> int:
    store = store_of(args)
    after = change_source_owner(store, args.source, department=args.department, owner=args.owner, actor=cli_actor())
    print(f"source {args.source}: department {department_name(after['department'])}, owner {after['owner']}")
    if after["moved"]:  # the stored views name departments: prepared again, as after a load
        print(f"stored summaries prepared again with the new department in {after['seconds']:.1f} s")
    return 0


def _read_password(args) -> str | None:
    if not getattr(args, "password_stdin", False):
        return None
    return sys.stdin.readline().rstrip("\r\n")


DEMO_USERS = {"exec": "executive", "journeys": "journey_owner", "ops": "ops", "agent": "agent"}


def cmd_users(args) -> int:
    """Users and roles (issue 7). Generated passwords are printed once and stored only hashed."""
    store, actor = store_of(args), cli_actor()
    if args.action == "add":
        generated = auth.add_user(store, args.name, args.role, _read_password(args), actor=actor, sso=args.sso)
        print(f"user {args.name.lower()} added as {args.role}")
        if generated:
            print(f"password (shown once, store it now): {generated}")
    elif args.action == "set-role":
        auth.set_role(store, args.name, args.role, actor=actor)
        print(f"user {args.name.lower()} is now {args.role}")
    elif args.action in ("disable", "enable"):
        auth.set_disabled(store, args.name, args.action == "disable", actor=actor)
        print(f"user {args.name.lower()} {args.action}d")
    elif args.action == "unlock":
        auth.unlock(store, args.name, actor=actor)
        print(f"user {args.name.lower()} unlocked")
    elif args.action == "reset-password":
        generated = auth.reset_password(store, args.name, _read_password(args), actor=actor)
        print(
            f"password of {args.name.lower()} reset"
            + (f"; new password (shown once): {generated}" if generated else "")
        )
    elif args.action == "bootstrap":
        created = {}
        fresh = auth.list_users(store).empty
        if not auth.has_admin(store):
            created["admin"] = ("admin", auth.add_user(store, "admin", "admin", actor=actor))
        if args.demo_users and fresh:  # a fresh install only: never adds accounts to a live one
            for name, role in DEMO_USERS.items():
                if auth.get_user(store, name) is None:
                    created[name] = (role, auth.add_user(store, name, role, actor=actor))
        for name, (role, password) in created.items():
            print(f"created {role:13} user {name!r} with password {password}  (shown once)")
        if not created:
            print("users already set up; `python -m cxdash users list` shows them")
    else:  # list
        frame = auth.list_users(store)
        if args.json:
            records = [{k: jsonable(v) for k, v in r.items()} for r in frame.astype(object).to_dict("records")]
            print(json.dumps(records, indent=2, default=str))
        else:
            print(frame.to_string(index=False) if len(frame) else "No users yet: `python -m cxdash users bootstrap`.")
    return 0


def cmd_erase(args) -> int:
    """Right to erasure (issue 7): forget one customer everywhere and keep them forgotten."""
    store = store_of(args)
    result = erase_customer(store, args.customer, actor=args.actor or cli_actor())
    print(result.summary())
    if args.compact:
        store.dispose()
        engines = [store.engine] + ([store.app_engine] if store.app_engine is not store.engine else [])
        for path in filter(None, map(compact_duckdb_file, engines)):
            print(f"{path.name} rewritten from its live rows: no freed space or old statistics keep the ids")
    return 0


def cmd_compact(args) -> int:
    """Rewrite an embedded DuckDB store from its live rows (after erasures; the app should be stopped)."""
    store = store_of(args)
    store.dispose()
    engines = [store.engine] + ([store.app_engine] if store.app_engine is not store.engine else [])
    done = [p for p in map(compact_duckdb_file, engines) if p]
    if not done:
        print("nothing to compact: the store is not an embedded DuckDB file")
    for path in done:
        print(f"{path.name} rewritten from its live rows ({path.stat().st_size:,} bytes)")
    return 0


def cmd_migrate(args) -> int:
    store = open_store(args.db, create=False)
    changes = upgrade_store(store)
    for change in changes:
        print(change)
    print(f"schema up to date at {store.url}" + (f" ({len(changes)} change(s))" if changes else ""))
    return 0
