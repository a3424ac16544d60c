"""The pre-commit hooks we ship and use run our real CLI over the example cadences."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

from cadence_engine.engine.loader import load_data

from .conftest import CADENCES, ROOT


def _hook(config: Any, hook_id: str) -> dict[str, Any]:
    hooks = config if isinstance(config, list) else [h for r in config["repos"] for h in r["hooks"]]
    return next(h for h in hooks if h["id"] == hook_id)


def _run(entry: str, files: list[str]) -> subprocess.CompletedProcess[str]:
    # `cadence` and `.venv/bin/cadence` are both this checkout's CLI, run as a process.
    args = entry.split()[1:]
    return subprocess.run(
        [sys.executable, "-m", "cadence_engine.cli", *args, *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )


def _matching(pattern: str) -> list[str]:
    return sorted(
        str(p.relative_to(ROOT))
        for p in CADENCES.iterdir()
        if re.search(pattern, str(p.relative_to(ROOT)))
    )


def test_offered_hook_validates_the_example_cadences() -> None:
    hook = _hook(load_data(ROOT / ".pre-commit-hooks.yaml"), "cadence-validate")
    files = _matching(hook["files"])
    assert len(files) == 3
    result = _run(hook["entry"], files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "3 files checked: no problems\n"


def test_own_config_runs_strict_validate_over_cadences() -> None:
    hook = _hook(load_data(ROOT / ".pre-commit-config.yaml"), "cadence-validate")
    assert hook["entry"].endswith("cadence validate --strict")
    result = _run(hook["entry"], _matching(hook["files"]))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hook_fails_on_a_bad_cadence() -> None:
    hook = _hook(load_data(ROOT / ".pre-commit-hooks.yaml"), "cadence-validate")
    result = _run(hook["entry"], ["tests/cases/validate/invalid/day-order.yaml"])
    assert result.returncode == 1 and "[day/order]" in result.stdout
