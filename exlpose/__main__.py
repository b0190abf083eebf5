"""``python -m exlpose`` runs the umbrella CLI."""

from exlpose.cli import main

main()
