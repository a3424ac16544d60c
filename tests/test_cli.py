"""The top-level command's contract: exit codes and behaviour as a Unix filter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cadence_engine.cli import cadence

from .conftest import CADENCES

CADENCE_BIN = Path(sys.executable).parent / "cadence"


def test_output_cut_short_by_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    contacts = tmp_path / "many.csv"
    rows = "".join(f"c{i}@example.com,Europe/Berlin\n" for i in range(3000))
    contacts.write_text("email,timezone\n" + rows, encoding="utf-8")
    args = ["plan", str(CADENCES / "event-follow-up.yaml"), "--contacts", str(contacts)]
    proc = subprocess.Popen(
        [str(CADENCE_BIN), *args, "--start", "2026-03-02T08:00Z", "-f", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0, err
    assert b'"contact":"c0@example.com"' in first.replace(b" ", b"")
    assert "internal error" not in err and "Traceback" not in err


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cadence, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_the_console_script_sets_the_collector_threshold_it_documents() -> None:
    """`main` (the `cadence` script, `python -m cadence_engine.cli`) raises the cyclic
    collector's first threshold before any command runs (see cli.GC_THRESHOLD)."""
    code = (
        "import gc, sys\n"
        "from cadence_engine import cli\n"
        "sys.argv = ['cadence', '--version']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print(gc.get_threshold(), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr.strip().splitlines()[-1] == "(7000, 10, 10)"
