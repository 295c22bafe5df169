"""Metrics: the shared vocabulary and the numbers every page reads.
Owns the signals registry, the timeline, churn definitions, the KPIs, periods, cohorts, conflicts and CLV.
Reads the store; never writes analytical tables.
"""
