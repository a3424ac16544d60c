"""The sandboxed Jinja environment every template is compiled and rendered in.

Jinja's sandbox keeps templates away from Python internals; this one also bounds what a
render may cost (engine.limits), because a cadence file from a pull request must not
decide how long `run` takes or how much memory it uses:

- the output of one render is counted as it is produced and stopped past
  `MAX_BODY_CHARS`;
- every operation that can make a large value from a small template (`*`, `+`, `%`,
  `**`, `~`, `str.format`, `center`, `indent`, `format`, `replace`, `join`, `batch`,
  `slice`, `lipsum`, …) checks the size of its result before it allocates it;
- every list, tuple, dict and namespace a template builds (a literal, an operator, a
  filter, a call, a method that adds to one) has its logical size checked against
  `MAX_BODY_CHARS`: a string counts its length, a container one plus its elements' sizes,
  a value shared by several elements once for each. `[a, a]` doubles a size, so thirty
  of them are refused long before `str()`, `hash()` or a sort would walk 2**30 elements
  in one C call no step counter sees. A list or namespace cannot change once it is
  inside another one (the other's size would be out of date);
- loop iterations and calls count against `MAX_RENDER_STEPS`, and the render's wall time
  against `MAX_RENDER_SECONDS` (after every call and filter, and every
  `_STEPS_PER_CLOCK_CHECK` loop iterations), so nested loops that print nothing end too,
  and so do many slow calls;
- those operators are not constant-folded at compile time, so `{{ 'a' * 10**9 }}` costs
  nothing to compile (the `template/too-large` rule reports it in `validate`).

Breaking a bound raises `RenderLimit`; the message layer turns it into a per-contact
render error.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from jinja2 import Template as JinjaTemplate
from jinja2 import nodes, pass_context, pass_environment
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, modifies_known_mutable
from jinja2.utils import Namespace

from .limits import MAX_BODY_CHARS, MAX_INT_DIGITS, MAX_RENDER_SECONDS, MAX_RENDER_STEPS

_STEPS_PER_CLOCK_CHECK = 1_000
_MAX_INT_BITS = int(MAX_INT_DIGITS * 3.33) + 1
_NUMBERS = re.compile(r"\d+")
_PRINTF_SPEC = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


class RenderLimit(Exception):
    """A render went past one of the bounds in engine.limits."""


class _Budget:
    """Steps and time left for the render in progress, and the logical size of every
    container it has seen (keyed by id, so each object is also held until the render
    ends and no id is reused)."""

    __slots__ = ("deadline", "held", "inside", "sizes", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.sizes: dict[int, int] = {}
        self.held: list[Any] = []
        self.inside: set[int] = set()  # mutable containers held by a measured one

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

    def measure(self, value: Any) -> int:
        """The logical size of `value`: about the length of its `str()`, and the number
        of elements `hash()`, `==` or a sort may visit."""
        kind = type(value)
        if kind is str:
            return len(value)
        if kind is int:  # up to MAX_INT_DIGITS digits each
            return int(value.bit_length()) // 3 + 1
        if not isinstance(value, _CONTAINERS):
            return len(value) if isinstance(value, str | bytes) else 1
        known = self.sizes.get(id(value))
        if known is not None:
            return known
        self.sizes[id(value)] = 0  # a container inside itself prints as `[...]`
        self.held.append(value)
        total = 1 + self.add_elements(_elements(value))
        self.sizes[id(value)] = total
        return total

    def add_elements(self, elements: Iterable[Any], total: int = 0) -> int:
        """`total` plus the sizes of `elements`, which are now inside a container."""
        measure, inside = self.measure, self.inside
        for item in elements:
            total += measure(item)
            if total > MAX_BODY_CHARS:
                _size(total, "a list or mapping")
            if isinstance(item, _MUTABLE):
                inside.add(id(item))
        return total

    def repeated(self, seq: list[Any] | tuple[Any, ...], times: int, result: Any) -> None:
        """`seq * times`, measured from `seq` without walking the result."""
        self.record(result, 1 + max(times, 0) * (self.measure(seq) - 1))

    def joined(self, left: Any, right: Any, result: Any) -> None:
        """`left + right` of two lists or tuples."""
        self.record(result, self.measure(left) + self.measure(right) - 1)

    def record(self, value: Any, total: int) -> None:
        if total > MAX_BODY_CHARS:
            _size(total, "a list or mapping")
        self.sizes[id(value)] = total
        self.held.append(value)

    def changing(self, owner: Any) -> int:
        """Before a method changes `owner`: its size, if it may change at all."""
        if id(owner) in self.inside:
            raise RenderLimit(
                "a list, mapping or namespace cannot change once it is inside another one"
            )
        return self.measure(owner)

    def changed(self, owner: Any, name: str, before: int, length: int, args: Any) -> None:
        """After `owner.name(*args)`: its new size (`length`: its length before)."""
        if name in ("append", "add", "insert") and args:
            total = self.add_elements(args[-1:], before)
        elif name == "extend":
            total = self.add_elements(owner[length:], before)
        else:  # update, setdefault, pop, …: measured again
            del self.sizes[id(owner)]
            total = self.measure(owner)
        self.record(owner, total)


_CONTAINERS = (list, tuple, dict, set, frozenset, Namespace)
_monotonic = time.monotonic
_MUTABLE = (list, dict, set, Namespace)


def _elements(value: Any) -> Iterable[Any]:
    if isinstance(value, Namespace):
        value = object.__getattribute__(value, "_Namespace__attrs")
    if isinstance(value, dict):
        return itertools.chain.from_iterable(value.items())
    return value  # type: ignore[no-any-return]


class _SizedNamespace(Namespace):
    """`namespace()`, whose `{% set ns.x = … %}` keeps the namespace's size known."""

    def __setitem__(self, name: str, value: Any) -> None:
        budget = _budget.get()
        if budget is not None:
            attrs: dict[str, Any] = object.__getattribute__(self, "_Namespace__attrs")
            before = budget.changing(self)
            if name in attrs:
                before -= budget.measure(name) + budget.measure(attrs[name])
            total = budget.add_elements((name, value), before)
            super().__setitem__(name, value)
            budget.record(self, total)
        else:
            super().__setitem__(name, value)


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
    """Jinja's code generator, with every `~` concatenation and every list, tuple and
    dict literal size-checked."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.sized(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # the names of `{% for a, b in … %}`: no value
            super().visit_Tuple(node, frame)
            return
        self.write("environment.sized(")
        super().visit_Tuple(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.sized(")
        super().visit_Dict(node, frame)
        self.write(")")


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
        result = super().call_binop(context, operator, left, right)
        budget = _budget.get()
        if budget is not None and isinstance(result, list | tuple):
            if operator == "*":
                seq, times = (left, right) if isinstance(left, list | tuple) else (right, left)
                budget.repeated(seq, times, result)
            else:
                budget.joined(left, right, result)
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget.get()
        if budget is None:
            check_method(__obj, args)
            return super().call(__context, __obj, *args, **kwargs)
        budget.step()
        check_method(__obj, args)
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        # isinstance against builtins first: modifies_known_mutable checks ABCs (slow).
        if isinstance(owner, list | dict | set) and modifies_known_mutable(owner, name):
            before, length = budget.changing(owner), len(owner)
            result = super().call(__context, __obj, *args, **kwargs)
            budget.changed(owner, name, before, length, args)
        else:
            result = super().call(__context, __obj, *args, **kwargs)
        if _monotonic() > budget.deadline:  # slow calls must not add up past the bound
            budget.clock()
        if isinstance(result, _CONTAINERS):
            budget.measure(result)
        elif isinstance(result, str | bytes) and len(result) > MAX_BODY_CHARS:
            _size(len(result), "a value")
        return result

    def sized(self, value: Any) -> Any:
        """A list, tuple or dict literal, refused when its logical size is too large."""
        budget = _budget.get()
        if budget is not None:
            budget.measure(value)
        return value

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
        elif name == "translate" and args:
            table = args[0]
            if not isinstance(table, dict):
                raise RenderLimit("str.translate() with a table that is not a mapping")
            longest = max((_sized(v) for v in table.values()), default=1)
            _size(len(owner) * max(longest, 1), "a translated value")
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
    wordwrap, sum_ = f["wordwrap"], f["sum"]

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

    @pass_environment
    def b_sum(env: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
        # Jinja's `rv += item` would extend a list `start` in place (behind its size's
        # back) and copy a tuple once for each item (quadratic): both built in one go.
        if not isinstance(start, list | tuple):
            return sum_(env, iterable, attribute, start)
        get = make_attrgetter(env, attribute) if attribute is not None else None
        parts = [get(p) for p in iterable] if get else list(iterable)
        if isinstance(start, tuple) and not all(isinstance(p, tuple) for p in parts):
            return sum_(env, parts, None, start)  # the TypeError Python gives
        return type(start)(itertools.chain(start, *parts))

    bounded: dict[str, Any] = {
        "indent": b_indent,
        "center": b_center,
        "format": b_format,
        "replace": b_replace,
        "join": b_join,
        "batch": b_batch,
        "slice": b_slice,
        "wordwrap": b_wordwrap,
        "sum": b_sum,
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
        budget = _budget.get()
        if budget is not None:
            if _monotonic() > budget.deadline:
                budget.clock()
            if isinstance(result, _CONTAINERS):
                budget.measure(result)
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
    env.globals["namespace"] = _SizedNamespace
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
