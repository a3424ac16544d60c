"""The schema as an editor sees it: yaml-language-server (npm), driven over LSP by node.

What an editor user meets: `choose_at_launch` on a later step is flagged as they type;
every snippet the server offers, inserted as an editor inserts it (placeholders filled
with their defaults, lines indented like the line of the cursor), gives a file that both
the editor and `cadence validate` accept; completion labels are readable.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence

from .conftest import ROOT
from .helpers.node_clients import node_script, run_json

SCHEMA = ROOT / "schemas" / "cadence.schema.json"
HEAD = f"""\
# yaml-language-server: $schema={SCHEMA.as_uri()}
cadence: 1
name: Editor check
sender: {{name: Dana Reyes, email: dana@acme.example}}
"""
TEMPLATES = """\
templates:
  intro: {subject: Hello, body: "Hi\\n"}
  bump: {subject: Again, body: "Hi again\\n"}
"""
CURSOR = "‸"

# Each case: a document with the cursor marked, and the completion labels to insert there.
CASES: dict[str, tuple[str, list[str]]] = {
    "templates": (
        HEAD + f"templates:\n  {CURSOR}\n"
        "steps:\n  - {id: one, day: 1, email: {template: intro, send: task}}\n",
        ["template"],
    ),
    "first-step": (HEAD + TEMPLATES + f"steps:\n  {CURSOR}\n", ["first email step"]),
    "later-step": (
        HEAD + TEMPLATES + "steps:\n  - {id: one, day: 1, email: {template: intro, send: task}}\n"
        f"  - {CURSOR}\n",
        ["email step", "call step", "inmail step", "custom step", "first email step"],
    ),
    "send": (
        HEAD + TEMPLATES + "steps:\n  - {id: one, day: 1, email: {template: intro, send: task}}\n"
        f"  - id: two\n    day: 2\n    email:\n      template: bump\n      send: {CURSOR}\n",
        ["at a time", "task", "same_time_as_previous"],
    ),
}


def expand(snippet: str, indent: str) -> str:
    """Insert an LSP snippet as an editor does: defaults and first choices, re-indented."""
    text = re.sub(r"\$\{\d+\|([^,|]*)[^}]*\|\}", r"\1", snippet)
    text = re.sub(r"\$\{\d+:([^}]*)\}", r"\1", text)
    text = re.sub(r"\$\{\d+\}|\$\d+", "", text)
    return text.replace("\n", "\n" + indent)


def split_cursor(marked: str) -> tuple[str, int, int]:
    before, after = marked.split(CURSOR)
    line = before.count("\n")
    return before + after, line, len(before) - (before.rfind("\n") + 1)


def lsp(documents: dict[str, str], completions: list[tuple[str, int, int]]) -> Any:
    command = node_script("yaml_ls.mjs", "yaml-language-server")
    job = {
        "documents": [{"uri": uri, "text": text} for uri, text in documents.items()],
        "completions": [{"uri": u, "line": ln, "character": ch} for u, ln, ch in completions],
    }
    return run_json(command, json.dumps(job))


def apply(text: str, line: int, col: int, item: dict[str, Any]) -> str:
    lines = text.split("\n")
    row = lines[line]
    start, end = col, col
    if item["range"] is not None:
        start, end = item["range"]["start"]["character"], item["range"]["end"]["character"]
    indent = re.match(r"\s*", row).group(0)  # type: ignore[union-attr]
    lines[line] = row[:start] + expand(item["insertText"], indent) + row[end:]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def offered() -> dict[str, list[dict[str, Any]]]:
    docs, at = {}, []
    for name, (marked, _) in CASES.items():
        text, line, col = split_cursor(marked)
        uri = f"file:///cadences/{name}.yaml"
        docs[uri] = text
        at.append((uri, line, col))
    answer = lsp(docs, at)
    return dict(zip(CASES, answer["completions"], strict=True))


def test_choose_at_launch_on_a_later_step_is_flagged_and_on_the_first_is_not() -> None:
    steps = "steps:\n  - {id: one, day: 1, email: {template: intro, send: choose_at_launch}}\n"
    later = "  - {id: two, day: 2, email: {template: bump, send: choose_at_launch}}\n"
    docs = {"file:///cadences/ok.yaml": HEAD + TEMPLATES + steps}
    docs["file:///cadences/later.yaml"] = HEAD + TEMPLATES + steps + later
    found = lsp(docs, [])["diagnostics"]
    assert found["file:///cadences/ok.yaml"] == []
    (problem,) = found["file:///cadences/later.yaml"]
    line = (HEAD + TEMPLATES + steps).count("\n")
    assert (problem["line"], problem["character"]) == (line, later.index("choose_at_launch"))


def test_send_completion_labels_are_readable(offered: dict[str, list[dict[str, Any]]]) -> None:
    labels = [item["label"] for item in offered["send"]]
    assert "at a time" in labels
    assert not [label for label in labels if "[object" in label]


def test_day_completion_inserts_a_valid_day(offered: dict[str, list[dict[str, Any]]]) -> None:
    days = [i["insertText"] for i in offered["later-step"] if i["label"] in ("day", "Step")]
    assert days and all("day: ${1:1}" in text or "day: ${2:1}" in text for text in days)


def test_every_snippet_inserted_as_an_editor_would_validates(
    offered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    inserted: dict[str, str] = {}
    for name, (marked, labels) in CASES.items():
        text, line, col = split_cursor(marked)
        by_label = {item["label"]: item for item in offered[name]}
        assert set(labels) <= set(by_label), (name, sorted(by_label))
        for label in labels:
            uri = f"file:///cadences/{name}-{label.replace(' ', '-')}.yaml"
            inserted[uri] = apply(text, line, col, by_label[label])
    found = lsp(inserted, [])["diagnostics"]
    assert {uri: problems for uri, problems in found.items() if problems} == {}
    for uri, text in inserted.items():
        path = tmp_path / uri.rsplit("/", 1)[1]
        path.write_text(text, encoding="utf-8")
        result = CliRunner().invoke(cadence, ["validate", str(path)])
        assert result.exit_code == 0, (text, result.output)
