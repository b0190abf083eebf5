"""annotation layer (see README)."""
