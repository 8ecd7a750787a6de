"""Retention: which snapshots to keep as they age (policy), and thinning them out (prune)."""
