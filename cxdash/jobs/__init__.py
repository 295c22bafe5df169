"""Jobs: what runs after a load or an erasure.
Owns the stored summaries and default views and the refresh that computes them.
The only layer that imports both the write path (ingest) and the read paths.
"""
