"""The command line (python -m cxdash): load, stitch, train, score, report.
Every command calls the same functions the pages call.
Sits on top: imports any package, nothing imports it.
"""

# The entry point is cxdash.cli.main.main. It is not re-exported here: a package attribute
# `main` would shadow the module cxdash.cli.main, which tests import as `from cxdash.cli import main`.
__all__: list[str] = []
