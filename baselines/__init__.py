"""baselines layer (see README)."""
