"""Print the rule table for the README: `python -m engine.rules`."""

from __future__ import annotations

from engine.rules import markdown_table

print(markdown_table(), end="")
