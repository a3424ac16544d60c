"""`cadence diff`: driven by tests/cases/plan/diff/<case>/{new.yaml,expected.txt}.

expected.txt: first line `exit: N`, then lines that must appear in the text output.
A new case needs files, not code.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence

CASES = Path(__file__).parent / "cases" / "plan" / "diff"
BASE = CASES / "base.yaml"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cadence, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_diff_case(case: str) -> None:
    expected = (CASES / case / "expected.txt").read_text(encoding="utf-8").splitlines()
    code, out, err = run("diff", str(BASE), str(CASES / case / "new.yaml"))
    assert f"exit: {code}" == expected[0], out + err
    for line in expected[1:]:
        assert line in out, f"missing {line!r} in:\n{out}"


def test_identical_files_are_no_change() -> None:
    code, out, _ = run("diff", str(BASE), str(BASE))
    assert code == 0 and out.endswith("no change for contacts\n")


def test_markdown_has_sections_diff_blocks_and_both_timelines() -> None:
    code, out, _ = run(
        "diff", str(BASE), str(CASES / "call-before-follow-up" / "new.yaml"), "-f", "markdown"
    )
    assert code == 1
    assert out.startswith("### Cadence diff: Outbound — heads of platform\n")
    assert "#### Rule consequences\n\n- ⚠️ " in out
    assert "\n- ⚠️ bump-2 now follows a call (call-2), so it can no longer be a follow-up" in out
    assert (
        "#### Before\n\n```mermaid\ngantt\n" in out and "#### After\n\n```mermaid\ngantt\n" in out
    )
    after = out.split("#### After")[1]
    assert "    4. call-2 :active, s4, 1970-01-04, 1d" in after
    code, out, _ = run(
        "diff", str(BASE), str(CASES / "template-text" / "new.yaml"), "-f", "markdown"
    )
    assert "  ```diff\n  --- old/last\n  +++ new/last\n" in out


def test_rev_path_reads_through_git(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    target = repo / "cadence.yaml"
    shutil.copy(BASE, target)

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=repo,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", "cadence.yaml")
    git("commit", "-q", "-m", "base")
    shutil.copy(CASES / "moved-day" / "new.yaml", target)
    result = subprocess.run(
        [
            str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"),
            "-m",
            "cadence_engine.cli",
            "diff",
            "HEAD:cadence.yaml",
            "cadence.yaml",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("HEAD:cadence.yaml → cadence.yaml\n")
    assert "bump-2 moved from day 4 to day 5" in result.stdout


def test_unknown_revision_is_a_usage_error() -> None:
    code, _, err = run("diff", "no-such-rev-xyz:cadences/x.yaml", str(BASE))
    assert code == 2 and "git show failed" in err
    assert "hint: REV:PATH reads PATH" in err and "Traceback" not in err


def test_missing_file_is_a_usage_error() -> None:
    code, _, err = run("diff", "nope.yaml", str(BASE))
    assert code == 2 and "nope.yaml: no such file" in err


def test_a_version_that_is_not_a_cadence_is_trouble_not_a_change(tmp_path: Path) -> None:
    # Exit 1 means "the plan changes"; a version that cannot be read is exit 2, as in diff(1).
    folder = tmp_path / "old.yaml"
    folder.mkdir()
    code, _, err = run("diff", str(folder), str(BASE))
    assert code == 2 and "cannot be compared" in err
    garbage = tmp_path / "list.yaml"
    garbage.write_text("- just\n- a list\n", encoding="utf-8")
    code, _, err = run("diff", str(BASE), str(garbage))
    assert code == 2 and "cannot be compared" in err


@pytest.mark.parametrize(
    ("steps", "says"),
    [
        ("steps: {}", "expected a list"),
        ("steps: []", "needs at least 1 item"),
        (
            "steps:\n  - {id: a, day: 1, email: {template: a, send: task}}\n"
            "  - {id: b, day: 9999999, email: {template: a, send: task}}",
            "day is a whole number from 1 to 1000",
        ),
    ],
    ids=["mapping", "empty", "day-beyond-the-bound"],
)
def test_a_version_with_nothing_to_schedule_is_not_comparable(
    tmp_path: Path, steps: str, says: str
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "cadence: 1\nname: W\nsender: {name: Dana, email: dana@acme.example}\n"
        'templates:\n  a: {subject: "S", body: "B"}\n' + steps + "\n",
        encoding="utf-8",
    )
    for args in ((str(BASE), str(broken)), (str(broken), str(BASE))):
        code, _, err = run("diff", *args)
        assert code == 2 and "cannot be compared" in err and says in err, err


def test_changes_are_told_in_the_files_words(tmp_path: Path) -> None:
    head = "cadence: 1\nname: W\nsender: {name: Dana, email: dana@acme.example}\n"
    steps = 'templates:\n  a: {subject: "S", body: "B"}\nsteps:\n'
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(
        head + steps + "  - {id: s1, day: 1, email: {template: a, send: {at: '09:00'}}}\n"
        "  - {id: li, day: 2, inmail: {}}\n",
        encoding="utf-8",
    )
    new.write_text(
        head + "settings: {skip_weekends: false}\n" + steps
        + "  - {id: s1, day: 1, email: {template: a, send: task}}\n"
        "  - {id: li, day: 2, email: {template: a, send: task}}\n",
        encoding="utf-8",
    )  # fmt: skip
    code, out, _ = run("diff", str(old), str(new))
    assert code == 1
    assert "s1 is now an email task (was an automatic email)" in out
    assert "li is now an email task (was an inmail task)" in out
    assert "skip_weekends: true → false" in out
