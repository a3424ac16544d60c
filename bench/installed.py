"""What the benches share: the package as `pip install` leaves it.

An installed package has its bytecode written once. Under PYTHONDONTWRITEBYTECODE an
editable install (or a fresh clone) would compile its modules from source in every
measured process instead, some 0.1 s of start-up that an installed package never spends.
"""

from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compile_package() -> None:
    """Write the package's bytecode, whatever PYTHONDONTWRITEBYTECODE says."""
    compileall.compile_dir(ROOT / "engine", quiet=1)
    compileall.compile_file(ROOT / "cli.py", quiet=1)
