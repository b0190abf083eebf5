"""Readers and writers of the annotation tools' file formats."""

from exlpose_data.jsonio import is_number, load_json

__all__ = ["load_json", "is_number"]
