"""A template's constant parts stay inside the render limits.

Every render is bounded (see "Limits" in the README): at most 1,000,000 characters of
output (1,000 for a subject), 100,000 loop iterations and calls, two seconds. A part of a
template that breaks a limit whatever the contact holds — `{{ 'a' * 10**9 }}`,
`{{ 'x' | indent(1000000000) }}`, `{{ '{:>1000000000}'.format('x') }}`, nested
`range(100000)` loops — would fail for every contact at send time, so it is an error
now. Make the value smaller, or drop it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from typing import Any

from ..findings import rule
from ..limits import MAX_RENDER_STEPS
from . import Issue
from .template_source import template_texts

RULE = rule(
    "template/too-large",
    "A template's constant part breaks a render limit.",
    __doc__ or "",
)


class _NotConstant(Exception):
    pass


# Stands for a contact's field (or a loop variable): the smallest non-empty text.
_PROBE = "x"


def check(doc: dict[str, Any]) -> Iterator[Issue]:
    for path, source in template_texts(doc):
        for message, line in limit_problems(source):
            yield Issue(RULE, message, path, text_pos=(line, 0))


@functools.lru_cache(maxsize=1024)
def limit_problems(source: str) -> tuple[tuple[str, int], ...]:
    """(message, line inside the text) for each constant part that breaks a limit."""
    if "{" not in source:
        return ()
    from jinja2 import TemplateSyntaxError, nodes

    from ..templates import RenderLimit, environment
    from .template_source import parsed

    env = environment()
    try:
        ast = parsed(source)  # parsing folds nothing: nothing large is built here
    except TemplateSyntaxError:
        return ()  # template/syntax reports it
    found: list[tuple[str, int]] = []
    for node in ast.find_all(nodes.Expr):
        try:
            _evaluate(env, node)
        except RenderLimit as exc:
            found.append((f"this template always fails to render: {exc}", node.lineno))
        except Exception:  # not constant, or an error the render will report per contact
            continue
    for line, iterations in _loops(ast, 1):
        found.append(
            (
                f"these nested loops run {iterations:,} times; a render may run "
                f"{MAX_RENDER_STEPS:,} loop iterations and calls",
                line,
            )
        )
    # One finding per line and message: an outer expression repeats its inner one.
    return tuple(dict.fromkeys(found))


def _evaluate(env: Any, node: Any) -> Any:
    """The value of a constant expression, computed through the render bounds; a
    contact field stands as a one-character text (`_PROBE`)."""
    from jinja2 import nodes
    from jinja2.nodes import EvalContext
    from jinja2.utils import _PassArg

    from ..templates import check_binop, check_method

    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Name) or (
        isinstance(node, nodes.Getattr)
        and isinstance(node.node, nodes.Name)
        and node.node.name in ("contact", "sender")
    ):
        return _PROBE  # a contact's value: what breaks a limit for "x" breaks it for any
    if isinstance(node, nodes.List | nodes.Tuple):
        return [_evaluate(env, n) for n in node.items]
    if isinstance(node, nodes.BinExpr):
        left, right = _evaluate(env, node.left), _evaluate(env, node.right)
        check_binop(node.operator, left, right)
        return env.binop_table[node.operator](left, right)
    if isinstance(node, nodes.Concat):
        return env.bounded_concat(_evaluate(env, n) for n in node.nodes)
    if isinstance(node, nodes.Filter) and node.node is not None and node.name in env.filters:
        func = env.filters[node.name]
        args = [_evaluate(env, node.node), *(_evaluate(env, a) for a in node.args)]
        kwargs: dict[str, Any] = {str(k.key): _evaluate(env, k.value) for k in node.kwargs}
        passing = _PassArg.from_obj(func)
        if passing is _PassArg.context:
            raise _NotConstant
        if passing is _PassArg.eval_context:
            args.insert(0, EvalContext(env))
        elif passing is _PassArg.environment:
            args.insert(0, env)
        return func(*args, **kwargs)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        owner = _evaluate(env, node.node.node)
        if not isinstance(owner, str):
            raise _NotConstant
        method = env.getattr(owner, node.node.attr)
        args = [_evaluate(env, a) for a in node.args]
        check_method(method, tuple(args))
        return method(*args)
    raise _NotConstant


def _loops(node: Any, outer: int) -> Iterator[tuple[int, int]]:
    """(line, iterations) of loops over constant ranges whose nesting passes the limit."""
    from jinja2 import nodes

    for child in node.iter_child_nodes():
        if isinstance(child, nodes.For):
            count = _range_length(child.iter)
            total = outer * (count if count is not None else 1)
            if count is not None and total > MAX_RENDER_STEPS:
                yield child.lineno, total
                continue
            yield from _loops(child, total)
        else:
            yield from _loops(child, outer)


def _range_length(node: Any) -> int | None:
    from jinja2 import nodes

    if not (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "range"
        and all(isinstance(a, nodes.Const) and isinstance(a.value, int) for a in node.args)
        and 1 <= len(node.args) <= 3
        and not node.kwargs
    ):
        return None
    try:
        return len(range(*(a.value for a in node.args if isinstance(a, nodes.Const))))
    except OverflowError:  # more items than an index can count
        return sys.maxsize
    except ValueError:  # a step of 0: the render reports it
        return None
