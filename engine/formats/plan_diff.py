"""`cadence diff` output: text for a terminal, Markdown for a pull-request comment."""

from __future__ import annotations

from ..diff import CATEGORIES, CadenceDiff, Change
from ..timeline import campaign_timeline

MARKS = {
    "steps": "~",
    "send": "~",
    "thread": "~",
    "rule": "!",
    "task": "~",
    "template": "~",
    "settings": "~",
}


def _mark(change: Change) -> str:
    if " added: " in change.message:
        return "+"
    if " removed (was " in change.message:
        return "-"
    return MARKS[change.category]


def _by_category(result: CadenceDiff) -> dict[str, list[Change]]:
    groups: dict[str, list[Change]] = {}
    for change in result.changes:
        groups.setdefault(change.category, []).append(change)
    return groups


def _headline(result: CadenceDiff) -> str:
    n = len(result.changes)
    if not n:
        return "no change for contacts"
    return f"{n} change{'s' if n != 1 else ''} for contacts"


def render_text(result: CadenceDiff) -> str:
    lines = [f"{result.old_label} → {result.new_label}", f"{result.new.name}: {_headline(result)}"]
    for category, changes in _by_category(result).items():
        lines += ["", CATEGORIES[category]]
        for change in changes:
            lines.append(f"  {_mark(change)} {change.message}")
            lines += [f"      {line}" for line in change.detail.splitlines()]
    return "\n".join(lines) + "\n"


def render_markdown(result: CadenceDiff) -> str:
    lines = [
        f"### Cadence diff: {result.new.name}",
        "",
        f"`{result.old_label}` → `{result.new_label}`: **{_headline(result)}**",
    ]
    for category, changes in _by_category(result).items():
        lines += ["", f"#### {CATEGORIES[category]}", ""]
        for change in changes:
            icon = "⚠️ " if change.category == "rule" else ""
            lines.append(f"- {icon}{_md(change.message)}")
            if change.detail:
                lines += ["", "  ```diff", *(f"  {x}" for x in change.detail.splitlines()), "  ```"]
    if result.changed:
        lines += [
            "",
            "<details><summary>Timeline before and after</summary>",
            "",
            "#### Before",
            "",
            campaign_timeline(result.old).rstrip("\n"),
            "",
            "#### After",
            "",
            campaign_timeline(result.new).rstrip("\n"),
            "",
            "</details>",
        ]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")
