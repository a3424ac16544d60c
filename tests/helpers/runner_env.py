"""Launch small cadences into a fresh store and run `cadence` as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ONE_EMAIL = """\
cadence: 1
name: Kill matrix
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  hello:
    subject: "Hello {{ contact.first_name }}"
    body: |
      Hi {{ contact.first_name }}, unsubscribe: {{ unsubscribe_url }}
steps:
  - {id: hello, day: 1, email: {template: hello, send: {at: "09:00"}}}
"""


def write_cadence(folder: Path, text: str = ONE_EMAIL, name: str = "cadence.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def write_contacts(folder: Path, count: int, name: str = "contacts.csv") -> Path:
    path = folder / name
    lines = ["email,first_name,company"]
    lines += [f"person{i}@example.com,P{i},Company {i}" for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cadence_cmd(
    *args: str, env: dict[str, str] | None = None, check: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`cadence ARGS` in a child process (a real process: it can crash and be killed)."""
    full = {**os.environ, **(env or {})}
    full.pop("CADENCE_FAULT", None) if env is None or "CADENCE_FAULT" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "cadence_engine.cli", *args],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )
