"""Command-line faces of the core (``exlpose-split``, ``exlpose validate``, ...)."""
