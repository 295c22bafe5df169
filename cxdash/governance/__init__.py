"""Governance: who may see and do what, and what the company keeps.
Owns users and roles, privacy (masking, small-group suppression), erasure, data health and source owners.
Reads the store, identity and metrics.
"""
