"""YAML text → plain data. Safe loading only (no arbitrary tags).

This is the minimal loader; the position table and fast path are built on top of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from engine.errors import InputError


def load_data(path: Path) -> Any:
    """Read and parse one YAML file into plain Python data."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}:1:1: file is not UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise InputError(f"{where}: YAML syntax error: {getattr(exc, 'problem', exc)}") from None
