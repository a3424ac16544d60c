"""`cadence fmt`: canonical layout, comments kept, idempotent, `--check` names files."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from cadence_engine.cli import cadence

from .conftest import CADENCES

MESSY = """\
# top comment
steps:   # the steps
   - {id: a,   day: 1, call: {}}   # first
name: x  # name
cadence: 1
"""


def fmt(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cadence, ["fmt", *args])
    return result.exit_code, result.stdout, result.stderr


def test_examples_are_already_canonical(tmp_path: Path) -> None:
    copy = tmp_path / "cadences"
    shutil.copytree(CADENCES, copy)
    assert fmt("--check", str(copy)) == (0, "", "")


def test_check_names_files_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "messy.yaml"
    path.write_text(MESSY, encoding="utf-8")
    code, out, _ = fmt("--check", str(path))
    assert (code, out) == (1, f"would reformat {path}\n")
    assert path.read_text(encoding="utf-8") == MESSY


def test_fmt_orders_keys_keeps_comments_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "messy.yaml"
    path.write_text(MESSY, encoding="utf-8")
    assert fmt(str(path))[0] == 0
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[:4] == ["# top comment", "cadence: 1", "name: x  # name", "steps:   # the steps"]
    assert lines[4].startswith("  - {id: a, day: 1, call: {}}") and lines[4].endswith("# first")
    assert fmt("--check", str(path))[0] == 0


def test_unparsable_file_is_reported_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    code, _, err = fmt(str(path))
    assert code == 1 and f"{path}:2:1: not formatted" in err and "Traceback" not in err
    assert path.read_text(encoding="utf-8") == "name: [unclosed\n"


def test_duplicate_key_is_named_when_not_formatted(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("cadence: 1\nname: a\nname: b\n", encoding="utf-8")
    code, _, err = fmt("--check", str(path))
    assert code == 1
    assert f"{path}:3:1: not formatted: duplicate key 'name'" in err
    assert "[yaml/duplicate-key]" in err


def test_an_impossible_date_is_named_where_validate_names_it(tmp_path: Path) -> None:
    path = tmp_path / "date.yaml"
    text = "cadence: 1\nname: a  # 2026-02-31 in a comment is no value\nsettings:\n"
    text += "  holidays: [2026-12-25, 2026-02-30]\n"
    path.write_text(text, encoding="utf-8")
    code, _, err = fmt(str(path))
    assert code == 1 and "Traceback" not in err
    assert f"{path}:4:26: not formatted: settings.holidays[1]: a date is YYYY-MM-DD" in err
    assert '(got "2026-02-30")' in err
    assert "[date/format]" in err and path.read_text(encoding="utf-8") == text
    checked = CliRunner().invoke(cadence, ["validate", str(path)])
    assert f"{path}:4:26: settings.holidays[1]" in checked.output


def test_a_crlf_file_keeps_crlf_on_every_line(tmp_path: Path) -> None:
    path = tmp_path / "windows.yaml"
    text = (CADENCES / "heads-of-platform.yaml").read_text(encoding="utf-8")
    path.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
    assert fmt("--check", str(path))[0] == 0
    messy = text.replace("cadence: 1\n", "cadence:   1   # version\n", 1)
    path.write_bytes(messy.replace("\n", "\r\n").encode("utf-8"))
    assert fmt(str(path))[0] == 0
    written = path.read_bytes()
    assert written.count(b"\n") == written.count(b"\r\n") == text.count("\n")
    assert b"# version\r\n" in written
    assert fmt("--check", str(path))[0] == 0


def test_check_reports_a_file_with_mixed_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    text = (CADENCES / "heads-of-platform.yaml").read_text(encoding="utf-8")
    lines = text.split("\n")
    path.write_bytes(("\r\n".join(lines[:5]) + "\n" + "\n".join(lines[5:])).encode("utf-8"))
    code, out, _ = fmt("--check", str(path))
    assert code == 1 and str(path) in out
    assert fmt(str(path))[0] == 0
    written = path.read_bytes()
    assert written.count(b"\n") == written.count(b"\r\n")
    assert fmt("--check", str(path))[0] == 0
