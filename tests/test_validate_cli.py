"""`cadence validate` end to end through click: paths, formats, exit codes, colour."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence

from .conftest import CADENCES, ROOT

INVALID = ROOT / "tests" / "cases" / "validate" / "invalid"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cadence, ["validate", *args], env=env or {"GITHUB_ACTIONS": ""})
    return result.exit_code, result.stdout, result.stderr


def test_clean_folder_exits_0_with_summary() -> None:
    code, out, _ = run(str(CADENCES))
    assert code == 0
    assert out == "3 files checked: no problems\n"


def test_findings_exit_1_in_actionlint_style() -> None:
    path = INVALID / "day-order.yaml"
    code, out, _ = run(str(path), str(CADENCES / "heads-of-platform.yaml"))
    assert code == 1
    assert out.splitlines() == [
        f"{path}:10:18: day 3 comes after day 5 (step 'b'); days never decrease through the "
        "list: move the step or fix its day [day/order]",
        "1 error, 0 warnings in 1 of 2 files",
    ]


def test_warnings_pass_unless_strict() -> None:
    path = str(INVALID / "same-time-day-1.yaml")
    assert run(path)[0] == 0
    code, out, _ = run("--strict", path)
    assert code == 1 and "warning: same_time_as_previous on day 1" in out


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("does-not-exist.yaml", "no such file or folder"),
        ("tests/cases/validate/nothing-*.yaml", "no files match this pattern"),
    ],
)
def test_bad_paths_are_usage_errors(argument: str, message: str) -> None:
    code, _, err = run(argument)
    assert code == 2 and message in err


def test_folder_without_cadences_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = run(str(tmp_path))
    assert code == 2 and "no cadence files" in err


def test_glob_expands_and_dedupes(tmp_path: Path) -> None:
    code, out, _ = run(f"{CADENCES}/*.yaml", str(CADENCES / "heads-of-platform.yaml"))
    assert (code, out) == (0, "3 files checked: no problems\n")


def test_github_format_is_chosen_on_github_actions() -> None:
    code, out, _ = run(str(INVALID / "step-id-unique.yaml"), env={"GITHUB_ACTIONS": "true"})
    assert code == 1 and out.startswith("::error file=")


def test_no_traceback_for_any_invalid_case() -> None:
    code, out, err = run(str(INVALID))
    assert code == 1
    assert "Traceback" not in out + err and "internal error" not in err
    count = len(list(INVALID.glob("*.yaml")))
    assert out.endswith(f"in {count} of {count} files\n")


def test_colour_and_snippet_only_on_a_terminal(tmp_path: Path) -> None:
    # CliRunner is not a terminal: plain text, no ANSI escapes, no snippet lines.
    code, out, _ = run(str(INVALID / "template-syntax.yaml"))
    assert code == 1
    assert "\033[" not in out and " | " not in out
