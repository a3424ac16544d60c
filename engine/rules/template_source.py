"""Where a cadence keeps Jinja template text, and what each text uses.

Shared by the template rules: every template string is parsed once (cached by its text)
in the sandboxed environment, and the names, attributes and filters it uses are listed
with their line inside the text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import Path, step_dicts, step_kind

ALLOWED_NAMES = ("contact", "sender", "unsubscribe_url")
SENDER_FIELDS = ("name", "email")


@dataclass(frozen=True, slots=True)
class Use:
    """A name, attribute or filter used in a template, at (line, col) inside its text."""

    name: str
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Analysis:
    syntax_error: Use | None = None  # `name` holds the message
    names: tuple[Use, ...] = ()  # free variables (not set inside the template)
    contact_fields: tuple[Use, ...] = ()
    sender_fields: tuple[Use, ...] = ()
    filters: tuple[Use, ...] = ()
    tests: tuple[Use, ...] = ()


def template_texts(doc: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """Every template string with its path from the document root."""
    templates = doc.get("templates")
    if isinstance(templates, dict):
        for name, template in templates.items():
            if isinstance(template, dict):
                for key in ("subject", "body"):
                    if isinstance(template.get(key), str):
                        yield ("templates", name, key), template[key]
    for index, step in step_dicts(doc.get("steps")):
        kind = step_kind(step)
        body = step.get(kind) if kind and kind != "email" else None
        if isinstance(body, dict):
            for key in ("title", "notes"):
                if isinstance(body.get(key), str):
                    yield ("steps", index, kind, key), body[key]  # type: ignore[misc]


def _column(source: str, line: int, pattern: str) -> int:
    """1-based column of `pattern` (a regex) on `line` of `source`; 0 when not found."""
    lines = source.splitlines()
    if 1 <= line <= len(lines):
        found = re.search(pattern, lines[line - 1])
        if found:
            return found.start() + 1
    return 0


class _AnyName(dict[str, Any]):
    """Filters or tests by name, where any name exists: code generation then lists the
    variables of a template that uses an unknown filter, like any other template."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key, _anything)


def _anything(*args: Any, **kwargs: Any) -> None:
    return None


@functools.cache
def _analysis_environment() -> Any:
    from ..templates import environment

    env = environment().overlay()
    env.filters = _AnyName(env.filters)
    env.tests = _AnyName(env.tests)
    return env


@functools.lru_cache(maxsize=4096)
def parsed(source: str) -> Any:
    """The syntax tree of `source`, parsed once for every rule that walks it (walk it,
    never change it); raises TemplateSyntaxError as Jinja does."""
    return _analysis_environment().parse(source)


_LOADING_TAGS = {
    "Extends": "extends",
    "Include": "include",
    "Import": "import",
    "FromImport": "from",
}


@functools.lru_cache(maxsize=4096)
def analyse(source: str) -> Analysis:
    # Imported here so that commands which never see a template do not pay for Jinja.
    from jinja2 import TemplateSyntaxError, meta, nodes

    if "{" not in source:  # no Jinja syntax at all: nothing to parse (most titles, notes)
        return Analysis()
    try:
        ast = parsed(source)
    except TemplateSyntaxError as exc:
        return Analysis(syntax_error=Use(exc.message or str(exc), exc.lineno, 0))

    def at(node: nodes.Node, pattern: str) -> tuple[int, int]:
        line = getattr(node, "lineno", 1) or 1
        return line, _column(source, line, pattern)

    # A cadence's templates are self-contained (the sandbox has no loader): a tag that
    # loads another template would fail for every contact at send time.
    for loads in ast.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        tag = _LOADING_TAGS[type(loads).__name__]
        return Analysis(
            syntax_error=Use(
                f"{{% {tag} %}} is not supported: a template cannot load another one; "
                "write the text into this template",
                loads.lineno,
                0,
            )
        )

    try:
        free = meta.find_undeclared_variables(ast)
    except TemplateSyntaxError as exc:
        # Unknown filters and tests are accepted by the analysis environment (they have
        # their own finding); what still fails here (a block defined twice) cannot compile.
        return Analysis(syntax_error=Use(exc.message or str(exc), exc.lineno, 0))
    names = []
    for name in sorted(free):
        for node in ast.find_all(nodes.Name):
            if node.name == name and node.ctx == "load":
                names.append(Use(name, *at(node, rf"\b{re.escape(name)}\b")))
                break
    contact: list[Use] = []
    sender: list[Use] = []
    for attr_node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(attr_node, nodes.Getattr | nodes.Getitem)
        target = attr_node.node
        if not isinstance(target, nodes.Name) or target.name not in ("contact", "sender"):
            continue
        if isinstance(attr_node, nodes.Getattr):
            attr = attr_node.attr
        elif isinstance(attr_node.arg, nodes.Const) and isinstance(attr_node.arg.value, str):
            attr = attr_node.arg.value
        else:
            continue
        use = Use(attr, *at(attr_node, rf"\b{target.name}\s*(\.\s*|\[\s*['\"]){re.escape(attr)}"))
        (contact if target.name == "contact" else sender).append(use)
    filters = [
        Use(f.name, *at(f, rf"\|\s*{re.escape(f.name)}\b")) for f in ast.find_all(nodes.Filter)
    ]
    tests = [
        Use(t.name, *at(t, rf"\bis\s+(not\s+)?{re.escape(t.name)}\b"))
        for t in ast.find_all(nodes.Test)
    ]
    return Analysis(None, tuple(names), tuple(contact), tuple(sender), tuple(filters), tuple(tests))
