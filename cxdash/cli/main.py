"""``python -m cxdash [--db URL] COMMAND``: the same operations as the app, for scheduled jobs.

Every command exits 0 on success and non-zero with a one-line reason on failure.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cxdash.cli.arguments import period_arguments, view_filter_arguments

__all__ = ["build_parser", "main"]

log = logging.getLogger("cxdash")

# The module of each command (cxdash.cli.<module>.cmd_<command>). ``main`` imports only the module
# of the command that runs: together they import pandas, scikit-learn, SQLAlchemy and every
# package of cxdash, about 7 s on the development machine, which ``--help`` and a quick
# ``migrate`` should not wait for. This is start-up time, not a cycle: no command module imports
# this one.
COMMAND_MODULES = {
    "sources": "admin",
    "demo": "demo",
    "ingest": "load",
    "journeys": "report",
    "hotspots": "report",
    "kpis": "report",
    "train": "model",
    "score": "model",
    "card": "model",
    "users": "admin",
    "erase": "admin",
    "compact": "admin",
    "churn": "report",
    "migrate": "admin",
}


def command_function(command: str):
    """The function that runs ``command`` (``cmd_<command>`` of its module), importing that module."""
    module = importlib.import_module(f"cxdash.cli.{COMMAND_MODULES[command]}")
    return getattr(module, f"cmd_{command}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cxdash", description=__doc__.splitlines()[0])
    p.add_argument("--db", help="SQLAlchemy database URL (default: $CXDASH_DB_URL or a DuckDB file under data/)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = p.add_subparsers(dest="command", required=True)

    _add_sources(sub)
    _add_loading(sub)
    _add_views(sub)
    _add_model(sub)
    _add_users(sub)
    _add_erasure(sub)
    _add_churn(sub)
    sub.add_parser("migrate", help="create or upgrade the schema")
    return p


def _add_sources(sub) -> None:
    """``sources`` and ``sources set``."""
    s = sub.add_parser("sources", help="list loaded sources")
    s.add_argument("--json", action="store_true", help="print JSON")
    ssub = s.add_subparsers(dest="action", required=False)
    ss = ssub.add_parser("set", help="change a source's department and/or owner (audited)")
    ss.add_argument("source")
    ss.add_argument("--department", help="the department its steps belong to on journeys and hotspots")
    ss.add_argument("--owner", help="the team or person to call about it")


def _add_loading(sub) -> None:
    """``demo`` and ``ingest``."""
    d = sub.add_parser("demo", help="generate the demo company's extracts and load them")
    d.add_argument("--customers", type=int, default=10_000)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--out", help="folder for the CSV extracts (default data/demo)")
    d.add_argument("--if-empty", action="store_true", help="only when the store holds no data yet")
    d.add_argument(
        "--no-train",
        action="store_true",
        help="do not train the first churn model (default: train one unless it exists)",
    )

    i = sub.add_parser("ingest", help="validate and load one CSV extract")
    i.add_argument("file")
    i.add_argument("--source", required=True, help="source name, e.g. crm or helpdesk")
    i.add_argument(
        "--kind",
        help="source kind; when omitted it is guessed, and the load stops unless one kind is "
        "clearly right (the source's saved mapping is used when there is one)",
    )
    i.add_argument("--mapping", help='mapping JSON: {"kind": KIND, "columns": {FIELD: COLUMN}}')
    i.add_argument("--mode", choices=["append", "replace"], default="append")
    i.add_argument("--reject-invalid", action="store_true", help="load valid rows, quarantine invalid ones")
    i.add_argument("--report", help="write the rejected rows with reasons to this CSV")
    i.add_argument(
        "--check",
        action="store_true",
        help="validate and report (kind guesses, mapping, failures, duplicates, impact) without loading",
    )
    i.add_argument(
        "--link",
        action="append",
        metavar="COLUMN=SOURCE.FIELD",
        help="the column holds keys of a loaded source (e.g. subscription_id=subs.subscription_id): "
        "rows with no customer identifier reach theirs through it (repeatable)",
    )
    i.add_argument("--department", help="the source's department (default: the kind's; a re-load keeps it)")
    i.add_argument("--owner", help="the team or person who owns the source (default: its department)")


def _add_views(sub) -> None:
    """``journeys``, ``hotspots`` and ``kpis``: the views the pages show."""
    j = sub.add_parser("journeys", help="print the directly-follows graph of customer journeys")
    j.add_argument("--json", action="store_true", help="print JSON: source, target, count, customers, median_seconds")
    j.add_argument("--min-share", type=float, default=0.0, help="pool edges below this share of transitions")
    j.add_argument("--top-n", type=int, default=None, help="keep the N most frequent activities, the rest as (other)")
    j.add_argument("--collapse", action="store_true", help="collapse repeated steps (a a b becomes a b)")
    j.add_argument("--by-department", action="store_true", help="group activities by department")
    j.add_argument("--rename", action="append", metavar="'OLD => NEW'", help="rename an activity (repeatable)")
    period_arguments(j, "all of the loaded data")
    view_filter_arguments(j)

    h = sub.add_parser(
        "hotspots",
        help="friction hotspots with the churn they come with (counts, lift, "
        "Benjamini-Hochberg-adjusted p), under the churn definition in force",
    )
    h.add_argument("--json", action="store_true", help="print JSON (NaN as null)")
    h.add_argument("--repeat-days", type=int, default=7, help="a repeat contact comes within N days (default 7)")
    period_arguments(h, "all of the loaded data")
    view_filter_arguments(h)

    k = sub.add_parser("kpis", help="the shared KPIs for a period (default: the 90 days to the latest data)")
    k.add_argument("--json", action="store_true", help="print JSON")
    period_arguments(k, "the 90 days to the latest data")
    k.add_argument("--repeat-days", type=int, default=7, help="a repeat contact comes within N days (default 7)")
    k.add_argument("--horizon", type=int, default=12, help="predicted CLV horizon in months (default 12)")
    view_filter_arguments(k)


def _add_model(sub) -> None:
    """``train``, ``score`` and ``card``."""
    t = sub.add_parser("train", help="train the churn model, save it as a new version and score customers")
    t.add_argument("--label-column", help="use this column of the customer table as the label (e.g. Churn)")
    t.add_argument("--source", help="the customer source to train on (default: every customer source)")
    t.add_argument("--cutoff", help="validation cutoff YYYY-MM-DD (default: the data's end minus the horizon)")
    t.add_argument("--horizon-days", type=float, default=30, help="churn within N days after a cutoff (default 30)")
    t.add_argument("--json", action="store_true", help="print the metrics as JSON")
    t.add_argument("--if-missing", action="store_true", help="only when no churn model has been trained yet")

    sc = sub.add_parser("score", help="the customers most at risk, from the newest model")
    sc.add_argument("--top", type=int, default=20, help="how many customers (default 20)")
    sc.add_argument("--rescore", action="store_true", help="score today's data again without retraining")
    sc.add_argument("--json", action="store_true", help="print JSON")

    cd = sub.add_parser("card", help="one customer's card: identifiers, signals, risk, reasons and next action")
    cd.add_argument("identifier", help="customer id, email or phone (any format), or a customer id prefix")
    cd.add_argument("--unmasked", action="store_true", help="show emails and phones in full (default: masked)")
    cd.add_argument("--json", action="store_true", help="print JSON")


def _add_users(sub) -> None:
    """``users`` and its actions."""
    u = sub.add_parser("users", help="manage who may sign in, and their roles")
    usub = u.add_subparsers(dest="action", required=True)
    ua = usub.add_parser("add", help="add a user (a password is generated and printed once unless given)")
    ua.add_argument("name")
    ua.add_argument("--role", required=True, choices=["executive", "journey_owner", "ops", "agent", "admin"])
    ua.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    ua.add_argument("--sso", action="store_true", help="signs in only through single sign-on (name = email)")
    ur = usub.add_parser("set-role", help="change a user's role")
    ur.add_argument("name")
    ur.add_argument("role", choices=["executive", "journey_owner", "ops", "agent", "admin"])
    for action, text in (
        ("disable", "stop a user signing in"),
        ("enable", "let a disabled user sign in again"),
        ("unlock", "clear a lock after failed sign-ins"),
    ):
        usub.add_parser(action, help=text).add_argument("name")
    up = usub.add_parser("reset-password", help="set a new password (generated and printed once unless given)")
    up.add_argument("name")
    up.add_argument("--password-stdin", action="store_true")
    ub = usub.add_parser("bootstrap", help="create the first admin (password printed once) when there is none")
    ub.add_argument(
        "--demo-users",
        action="store_true",
        help="on a fresh install, also create one demo user per role (exec, journeys, ops, agent)",
    )
    ul = usub.add_parser("list", help="list users and roles")
    ul.add_argument("--json", action="store_true")


def _add_erasure(sub) -> None:
    """``erase`` and ``compact``."""
    e = sub.add_parser("erase", help="erase one customer everywhere (right to erasure) and suppress re-loads")
    e.add_argument("--customer", required=True, help="any identifier: customer id, email, phone, account, visitor")
    e.add_argument("--actor", help="who asked, for the audit log (default: cli:<login name>)")
    e.add_argument(
        "--no-compact",
        dest="compact",
        action="store_false",
        help="do not rewrite an embedded DuckDB file afterwards (its old statistics may then keep the ids)",
    )
    sub.add_parser("compact", help="rewrite an embedded DuckDB store from its live rows (stop the app first)")


def _add_churn(sub) -> None:
    """``churn``: list the definitions, or choose one."""
    c = sub.add_parser("churn", help="the churn definitions the data supports, with their figures; choose one")
    c.add_argument(
        "--json",
        action="store_true",
        help='print {"definition": NAME, "candidates": [{"name", "basis", "source", "customers", ...}]}',
    )
    c.add_argument(
        "--use",
        metavar="NAME",
        help="make NAME the company's churn definition (audited), e.g. "
        "label:crm, subscriptions, events:churn, inactivity:90",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(command_function(args.command)(args) or 0)
    except KeyboardInterrupt:
        print("cxdash: interrupted; nothing was committed by the interrupted step", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, no traceback, for scheduled jobs
        if args.verbose:
            log.exception("failed")
        message = " ".join(str(exc).split())
        print(f"cxdash {args.command}: {message}", file=sys.stderr)
        return 1
