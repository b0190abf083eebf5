"""rig layer (see README)."""
