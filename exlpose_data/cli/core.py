"""Core commands mounted at the top of ``exlpose``: validate, stats, verify, schema."""

from __future__ import annotations

import json

import typer

from ..schema import annotation_json_schema
from .common import handle_errors, new_app

app = new_app("Core dataset commands.")
schema_app = new_app("Print JSON Schemas of the toolkit's file formats.")
app.add_typer(schema_app, name="schema")


@schema_app.command("annotations")
@handle_errors
def schema_annotations() -> None:
    """Print the JSON Schema of a CrowdPose-style annotation file."""
    typer.echo(json.dumps(annotation_json_schema(), indent=2))
