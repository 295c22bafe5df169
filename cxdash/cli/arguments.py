"""Argument helpers the parser and the view commands share (light: no cxdash import, for a fast ``--help``)."""

from __future__ import annotations

__all__ = ["VIEW_FILTERS", "period_arguments", "view_filter_arguments"]

# The filters a Shared KPIs or Journeys view takes (cxdash.metrics.Filters), as the command line spells them.
VIEW_FILTERS = ("segment", "region", "plan", "channel", "campaign", "department")


def period_arguments(parser, default: str) -> None:
    """``--from``/``--to``: the pages' shared period (both days included)."""
    parser.add_argument("--from", dest="date_from", help=f"first day, YYYY-MM-DD (default: {default})")
    parser.add_argument("--to", dest="date_to", help="last day (included), YYYY-MM-DD")


def view_filter_arguments(parser) -> None:
    """``--segment X`` etc. (repeatable: any of the values), so any view a page shows can be scripted."""
    for name in VIEW_FILTERS:
        what = "the team whose activity and contacts count" if name == "department" else f"customers whose {name} is"
        parser.add_argument(f"--{name}", action="append", metavar="VALUE", help=f"only {what} VALUE (repeatable)")
