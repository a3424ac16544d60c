"""The sandboxed Jinja environment every template is compiled and rendered in.

Jinja's sandbox keeps templates away from Python internals; this one also bounds what a
render may cost (engine.limits), because a cadence file from a pull request must not
decide how long `run` takes or how much memory it uses:

- the output of one render is counted as it is produced and stopped past
  `MAX_BODY_CHARS`;
- every operation that can make a large value from a small template (`*`, `+`, `%`,
  `**`, `~`, `str.format`, `center`, `indent`, `format`, `replace`, `join`, `batch`,
  `slice`, `lipsum`, …) checks the size of its result before it allocates it;
- loop iterations and calls count against `MAX_RENDER_STEPS`, and the render's wall time
  against `MAX_RENDER_SECONDS`, so nested loops that print nothing end too;
- those operators are not constant-folded at compile time, so `{{ 'a' * 10**9 }}` costs
  nothing to compile (the `template/too-large` rule reports it in `validate`).

Breaking a bound raises `RenderLimit`; the message layer turns it into a per-contact
render error.
"""

from __future__ import annotations

import functools
import os
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from jinja2 import Template as JinjaTemplate
from jinja2 import nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from .limits import MAX_BODY_CHARS, MAX_INT_DIGITS, MAX_RENDER_SECONDS, MAX_RENDER_STEPS

_STEPS_PER_CLOCK_CHECK = 1_000
_MAX_INT_BITS = int(MAX_INT_DIGITS * 3.33) + 1
_NUMBERS = re.compile(r"\d+")
_PRINTF_SPEC = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


class RenderLimit(Exception):
    """A render went past one of the bounds in engine.limits."""


class _Budget:
    """Steps and time left for the render in progress."""

    __slots__ = ("deadline", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def step(self, n: int = 1) -> None:
        before = self.steps
        self.steps += n
        if self.steps > MAX_RENDER_STEPS:
            raise RenderLimit(
                f"more than {MAX_RENDER_STEPS:,} loop iterations and calls in one render"
            )
        if before // _STEPS_PER_CLOCK_CHECK != self.steps // _STEPS_PER_CLOCK_CHECK:
            self.clock()

    def clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimit(f"the render took longer than {MAX_RENDER_SECONDS:g} seconds")


_budget: ContextVar[_Budget | None] = ContextVar("cadence_render_budget", default=None)


def _step(n: int = 1) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.step(n)


def _size(n: int, what: str) -> None:
    if n > MAX_BODY_CHARS:
        raise RenderLimit(f"{what} would be {n:,} long; a render may produce {MAX_BODY_CHARS:,}")


_SIZED = (str, list, tuple, bytes)  # a tuple: isinstance checks it faster than a union


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, _SIZED) else 0


def check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(times, int):
                _size(len(seq) * max(times, 0), "a repeated value")
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() + right.bit_length() > _MAX_INT_BITS
        ):
            raise RenderLimit(f"a number of more than {MAX_INT_DIGITS:,} digits")
    elif operator == "**":
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and right > 0
            and max(abs(left).bit_length() - 1, 0) * right > _MAX_INT_BITS
        ):
            raise RenderLimit(f"a number of more than {MAX_INT_DIGITS:,} digits")
    elif operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            _size(len(left) + len(right), "a joined value")
    elif operator == "%" and isinstance(left, str):
        _check_printf(left, right)


def _check_printf(fmt: str, args: Any) -> None:
    """`fmt % args` refused when a width or precision would make it large."""
    for width, precision in _PRINTF_SPEC.findall(fmt):
        for n in (width, precision):
            if n == "*":
                raise RenderLimit("a %-format width taken from the arguments (`*`)")
            if n and int(n) > MAX_BODY_CHARS:
                _size(int(n), "a %-formatted value")


def _check_format_spec(fmt: str) -> None:
    """`fmt.format(...)` refused when a field's width could make it large."""
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is None or not spec:
            continue
        if "{" in spec:
            raise RenderLimit("a format width taken from the arguments (`{:{w}}`)")
        for n in _NUMBERS.findall(spec):
            _size(int(n), "a formatted value")


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with every `~` concatenation size-checked."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


@pass_context
def _counted(context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _step()
        yield item


_DICT_ATTRIBUTES = frozenset(dir(dict))  # every attribute a plain dict instance has


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox with the render bounds of the module docstring."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        # Every `for` loop iterates through `cadence_counted`, which counts its steps.
        for loop in source.find_all(nodes.For):
            counted = nodes.Filter(loop.iter, "cadence_counted", [], [], None, None)
            loop.iter = counted.set_lineno(loop.lineno)
        return super()._generate(source, name, filename, defer_init)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `contact.first_name`: a plain dict has no attribute of that name, so the
        # sandbox would fail over to the item after an AttributeError; take it directly.
        if type(obj) is dict and type(attribute) is str and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        check_method(__obj, args)
        result = super().call(__context, __obj, *args, **kwargs)
        _size(_sized(result), "a value")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format_spec(fmt)
            return wrapped(*args, **kwargs)

        return checked

    def bounded_concat(self, parts: Iterable[Any]) -> str:
        return _bounded_join(str(p) for p in parts)

    # What compiled templates join macro output, `{% set %}` blocks and filter blocks with.
    concat = staticmethod(lambda parts: _bounded_join(parts))


def _bounded_join(parts: Iterable[str]) -> str:
    texts = list(parts)
    _size(sum(map(len, texts)), "a joined value")
    return "".join(texts)


def check_method(obj: Any, args: tuple[Any, ...]) -> None:
    """Methods of strings and lists that can multiply their size, checked first."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str):
        if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
            _size(args[0], f"str.{name}()")
        elif name == "expandtabs":
            _size(len(owner) * (args[0] if args and isinstance(args[0], int) else 8), "a value")
        elif name == "replace" and len(args) >= 2:
            _check_replace(owner, args[0], args[1])
        elif name == "join" and args:
            items = args[0]
            if isinstance(items, list | tuple):
                _size(sum(map(_sized, items)) + len(owner) * len(items), "str.join()")


def _check_replace(text: str, old: Any, new: Any) -> None:
    if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        count = len(text) + 1 if old == "" else text.count(old)
        _size(len(text) + count * (len(new) - len(old)), "a replaced value")


def _bounded_filters(env: SandboxedEnvironment) -> dict[str, Any]:
    """Filters whose arguments can make a large value, wrapped with a check first."""
    f = env.filters
    indent, center, fmt = f["indent"], f["center"], f["format"]
    replace, join, batch, slice_ = f["replace"], f["join"], f["batch"], f["slice"]
    wordwrap = f["wordwrap"]

    def b_indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> str:
        text = str(s)
        pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        _size(len(text) + (text.count("\n") + 1) * pad, "an indented value")
        return str(indent(s, width, first, blank))

    def b_center(value: Any, width: int = 80) -> str:
        _size(width if isinstance(width, int) else 0, "a centred value")
        return str(center(value, width))

    def b_format(value: Any, *args: Any, **kwargs: Any) -> str:
        _check_printf(str(value), args or kwargs)
        return str(fmt(value, *args, **kwargs))

    @pass_context
    def b_replace(ctx: Context, s: Any, old: Any, new: Any, count: int | None = None) -> str:
        _check_replace(str(s), old, new)
        return str(replace(ctx.eval_ctx, s, old, new, count))

    @pass_context
    def b_join(ctx: Context, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
        items = list(value)
        _step(len(items))
        _size(sum(len(str(i)) for i in items) + len(d) * len(items), "a joined value")
        return str(join(ctx.eval_ctx, items, d, attribute))

    def b_batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Any:
        _size(linecount if isinstance(linecount, int) else 0, "a batch")
        return batch(value, linecount, fill_with)

    def b_slice(value: Iterable[Any], slices: int, fill_with: Any = None) -> Any:
        _size(slices if isinstance(slices, int) else 0, "a slice count")
        return slice_(value, slices, fill_with)

    @pass_context
    def b_wordwrap(ctx: Context, s: str, width: int = 79, *args: Any, **kwargs: Any) -> str:
        _step(len(str(s)) // 100)
        return str(wordwrap(ctx.environment, s, width, *args, **kwargs))

    bounded: dict[str, Any] = {
        "indent": b_indent,
        "center": b_center,
        "format": b_format,
        "replace": b_replace,
        "join": b_join,
        "batch": b_batch,
        "slice": b_slice,
        "wordwrap": b_wordwrap,
    }
    out = {name: _result_checked(func) for name, func in {**f, **bounded}.items()}
    out["cadence_counted"] = _counted
    return out


def _result_checked(func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose result is refused when it is too large, so a value can grow past
    the bound once (by the filter's own factor), never again and again in a loop."""

    @functools.wraps(func)  # keeps Jinja's pass_context / pass_eval_context mark
    def checked(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        if isinstance(result, _SIZED) and len(result) > MAX_BODY_CHARS:
            _size(len(result), "a filtered value")
        return result

    return checked


def _bounded_lipsum(lipsum: Callable[..., str]) -> Callable[..., str]:
    def bounded(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        _size(n * max if isinstance(n, int) and isinstance(max, int) else 0, "lipsum")
        return lipsum(n, html, min, max)

    return bounded


@functools.cache
def environment() -> BoundedSandbox:
    """One shared sandbox: templates cannot reach Python internals (SPEC §7, safe templates)."""
    env = BoundedSandbox(autoescape=False, keep_trailing_newline=True)
    env.filters.update(_bounded_filters(env))
    lipsum: Callable[..., str] = env.globals["lipsum"]  # type: ignore[assignment]
    env.globals["lipsum"] = _bounded_lipsum(lipsum)
    return env


@functools.lru_cache(maxsize=4096)
def compile_template(source: str) -> JinjaTemplate:
    """Compile once per distinct source text; rendering many contacts reuses it."""
    return environment().from_string(source)


def run_bounded(chunks: Callable[[], Iterable[str]], limit: int = MAX_BODY_CHARS) -> str:
    """Join the chunks a render produces, within the steps, time and size bounds."""
    budget = _Budget()
    token = _budget.set(budget)
    try:
        out: list[str] = []
        append = out.append
        total = 0
        for chunk in chunks():
            total += len(chunk)
            if total > limit:
                raise RenderLimit(f"the output passed {limit:,} characters")
            append(chunk)
            if not len(out) % _STEPS_PER_CLOCK_CHECK:
                budget.clock()
        return "".join(out)
    finally:
        _budget.reset(token)


def render(source: str, context: dict[str, Any]) -> str:
    template = compile_template(source)
    return run_bounded(lambda: template.generate(context))


def configured_render_workers() -> int | None:
    """`CADENCE_WORKERS`: processes that render (0: the calling process renders), if set.

    One setting for every command that renders in bulk (`plan --render`, `run`).
    """
    configured = os.environ.get("CADENCE_WORKERS", "")
    return int(configured) if configured.isdigit() else None
