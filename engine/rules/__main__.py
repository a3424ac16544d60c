"""Print the rule table for the README: `python -m cadence_engine.engine.rules`."""

from __future__ import annotations

from . import markdown_table

print(markdown_table(), end="")
