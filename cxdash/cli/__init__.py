"""The command line (python -m cxdash): load, stitch, train, score, report.
Every command calls the same functions the pages call.
Sits on top: imports any package, nothing imports it.
"""
