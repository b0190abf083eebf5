"""``exlpose-split``: split annotation files by well-lit gain or by scene."""

from __future__ import annotations

from .common import new_app

app = new_app("Split annotation files: by-gain (LL-N/H/E) or by-scene (train/val/test).")


def main() -> None:
    app(prog_name="exlpose-split")
