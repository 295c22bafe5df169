"""Journeys: where the cross-department journey breaks.
Owns the journey log, process discovery (graph, paths, variants), funnels, handoffs and friction hotspots.
Reads the store and metrics.
"""
