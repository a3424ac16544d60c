"""Run the real JavaScript clients our users pair cadences with (tests/js/), or skip.

`make test` installs them (`npm ci` in tests/js); without Node.js or that install the
tests that need them are skipped with a message saying how to get them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS = Path(__file__).resolve().parent.parent / "js"


def node_script(name: str, package: str) -> list[str]:
    """The command that runs tests/js/NAME with node, or skip when node or PACKAGE is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: install it (apt-get install nodejs npm)")
    if not (JS / "node_modules" / package / "package.json").is_file():
        pytest.skip(f"npm package {package} is missing: run `make js`")
    return [node, str(JS / name)]


def run_json(command: list[str], stdin: str = "") -> Any:
    """Run a client script and return the JSON it prints."""
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, cwd=JS, check=False, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
