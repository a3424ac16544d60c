"""The sandboxed Jinja environment every template is compiled and rendered in."""

from __future__ import annotations

import functools
import os
from typing import Any

from jinja2 import Template as JinjaTemplate
from jinja2.sandbox import SandboxedEnvironment


@functools.cache
def environment() -> SandboxedEnvironment:
    """One shared sandbox: templates cannot reach Python internals (SPEC §7, safe templates)."""
    return SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


@functools.lru_cache(maxsize=4096)
def compile_template(source: str) -> JinjaTemplate:
    """Compile once per distinct source text; rendering many contacts reuses it."""
    return environment().from_string(source)


def render(source: str, context: dict[str, Any]) -> str:
    return compile_template(source).render(context)


def configured_render_workers() -> int | None:
    """`CADENCE_WORKERS`: processes that render (0: the calling process renders), if set.

    One setting for every command that renders in bulk (`plan --render`, `run`).
    """
    configured = os.environ.get("CADENCE_WORKERS", "")
    return int(configured) if configured.isdigit() else None
