"""The umbrella ``exlpose`` command: wires the layers' own CLIs together, lazily."""
