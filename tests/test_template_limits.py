"""Every render is bounded (issue 8, defect 4): output size, loop iterations and calls,
time, number size; `validate` refuses what breaks a bound whatever the contact holds.

No case here allocates more than a few megabytes: the bound is checked before the value
is built, which `tracemalloc` confirms for the worst ones.
"""

from __future__ import annotations

import json
import re
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence_engine.cli import cadence
from cadence_engine.engine import templates
from cadence_engine.engine.limits import MAX_BODY_CHARS, MAX_RENDER_STEPS, MAX_SUBJECT_CHARS
from cadence_engine.engine.templates import RenderLimit, compile_template, render
from tests.helpers.runner_env import write_cadence


@pytest.fixture(autouse=True)
def _no_time_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other bounds are what these tests are about: a loaded machine (tracemalloc is
    slow too) must not reach the time bound first and change the error."""
    monkeypatch.setattr(templates, "MAX_RENDER_SECONDS", 600.0)


CONTACT = {"contact": {"first_name": "Ava", "seats": "100000"}}
_MB = 1024 * 1024


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("{{ contact.first_name | indent(1000000000, true) }}", "indented value"),
        ("{{ '{:>1000000000}'.format('x') }}", "formatted value"),
        ("{{ '{:>{w}}'.format('x', w=1000000000) }}", "format width taken from the arguments"),
        ("{{ 'a' * 10**8 }}", "repeated value"),
        ("{{ contact.first_name * 1000000000 }}", "repeated value"),
        ("{{ '%1000000000s' % 'x' }}", "%-formatted value"),
        ("{{ '%1000000000s' | format('x') }}", "%-formatted value"),
        ("{{ 'x' | center(1000000000) }}", "centred value"),
        ("{{ 'x'.rjust(1000000000) }}", "str.rjust()"),
        ("{{ range(10) | batch(1000000000, 'x') | list }}", "a batch"),
        ("{{ lipsum(1000000) }}", "lipsum"),
        ("{{ 10 ** 5000 }}", "1,000 digits"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            f"{MAX_RENDER_STEPS:,} loop iterations",
        ),
        (
            "{% for c in 'x' * 100000 %}{% for d in 'x' * 100000 %}{% endfor %}{% endfor %}",
            "loop iterations",
        ),
        (
            "{% macro f() %}{% for i in range(1000) %}{{ f() }}{% endfor %}{% endmacro %}{{ f() }}",
            "",
        ),
        # Growth that doubles a value in a loop stops at the bound, whatever joins it.
        (
            "{% set ns = namespace(x='ab') %}{% for i in range(60) %}"
            "{% set ns.x = ns.x ~ ns.x %}{% endfor %}",
            "joined value",
        ),
        (
            "{% set ns = namespace(x='ab') %}{% for i in range(60) %}"
            "{% set ns.x = [ns.x, ns.x] | join %}{% endfor %}",
            "would be",  # the list, or the string joined from it
        ),
        (
            "{% set ns = namespace(x='ab') %}{% for i in range(60) %}"
            "{% set ns.x = ns.x.replace('a', 'aa') %}{% endfor %}",
            "replaced value",
        ),
        (
            "{% set ns = namespace(x='ab') %}{% for i in range(60) %}"
            "{% set ns.x %}{{ ns.x }}{{ ns.x }}{% endset %}{% endfor %}",
            "",
        ),
        (
            "{% for i in range(2000) %}{{ 'x' * 600 }}{% endfor %}",
            f"output passed {MAX_BODY_CHARS:,} characters",
        ),
    ],
)
def test_a_render_that_breaks_a_bound_stops_early(source: str, says: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises((RenderLimit, RecursionError), match=re.escape(says) if says else None):
            render(source, CONTACT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * _MB, f"peak {peak / _MB:.0f} MB"


def test_the_render_time_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(templates, "MAX_RENDER_SECONDS", -1.0)  # every clock check is late
    with pytest.raises(RenderLimit, match="longer than -1 seconds"):
        render("{% for i in range(5000) %}{% endfor %}", CONTACT)


def test_ordinary_templates_render_as_before() -> None:
    source = (
        "Hi {{ contact.first_name | default('there') }}, {{ [1, 2] | join(',') }} "
        "{{ 'ab' | center(6) }}|{{ '{:>4}'.format('x') }}|{{ '%3s' % 'y' }}|{{ 2 ** 10 }}"
        "{% for i in range(3) %}{{ loop.index }}{% endfor %}"
    )
    assert render(source, CONTACT) == "Hi Ava, 1,2   ab  |   x|  y|1024123"


def test_compiling_a_huge_constant_builds_nothing() -> None:
    """`{{ 'a' * 10**9 }}` used to be constant-folded into a gigabyte at compile time."""
    tracemalloc.start()
    try:
        compile_template("{{ 'a' * 10**9 }}{{ 'b' | indent(10**9) }}{{ 10 ** 10 ** 8 }}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * _MB


BIG = """\
cadence: 1
name: Big
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
contact_fields: [seats]
templates:
  intro:
    subject: "{{ 'a' * 10**9 }}"
    body: |
      Hi {{ contact.first_name | indent(1000000000, true) }}
      {{ '{:>1000000000}'.format('x') }}
      {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}
      {{ contact.first_name * 1000000000 }}
      {{ contact.first_name * 3 }} {{ 'fine' | indent(4) }}
steps:
  - {id: intro, day: 1, email: {template: intro, send: {at: "09:00"}}}
"""


def test_validate_refuses_constant_parts_that_break_a_bound(tmp_path: Path) -> None:
    path = write_cadence(tmp_path, BIG)
    tracemalloc.start()
    try:
        result = CliRunner().invoke(cadence, ["validate", "-f", "json", str(path)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * _MB
    assert result.exit_code == 1, result.output
    findings = json.loads(result.output)["findings"]
    got = [(f["line"], f["rule"]) for f in findings]
    assert got == [(line, "template/too-large") for line in (8, 10, 11, 12, 13)], findings
    assert all(f["col"] > 0 for f in findings)


PER_CONTACT = """\
cadence: 1
name: Per contact
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
contact_fields: [seats]
templates:
  intro:
    subject: "Hello {{ contact.first_name }}"
    body: |
      {% for i in range(contact.seats | int) %}
      {% for j in range(contact.seats | int) %}{% endfor %}{% endfor %}
      Hi {{ contact.first_name }}
steps:
  - {id: intro, day: 1, email: {template: intro, send: {at: "09:00"}}}
"""


def test_a_bound_a_contact_breaks_is_a_clear_error_in_preview_and_launch(tmp_path: Path) -> None:
    path = write_cadence(tmp_path, PER_CONTACT)
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("email,first_name,seats\nava@n.example,Ava,100000\n", encoding="utf-8")
    env = {"CADENCE_DB": str(tmp_path / "state.db")}
    assert CliRunner().invoke(cadence, ["validate", str(path)]).exit_code == 0
    for args in (
        ["preview", str(path), "--contact", "ava@n.example", "--contacts", str(contacts)],
        ["launch", str(path), "--contacts", str(contacts), "--now", "2026-03-02T08:00Z"],
    ):
        result = CliRunner().invoke(cadence, args, env=env)
        assert result.exit_code == 1, result.output
        assert "does not render for ava@n.example" in result.output
        assert f"more than {MAX_RENDER_STEPS:,} loop iterations" in result.output


def test_a_subject_over_its_limit_is_a_per_contact_error(tmp_path: Path) -> None:
    path = write_cadence(tmp_path)  # subject "Hello {{ contact.first_name }}"
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        f"email,first_name\nava@n.example,{'A' * MAX_SUBJECT_CHARS}\n", encoding="utf-8"
    )
    args = ["preview", str(path), "--contact", "ava@n.example", "--contacts", str(contacts)]
    result = CliRunner().invoke(cadence, args)
    assert result.exit_code == 1, result.output
    assert f"the output passed {MAX_SUBJECT_CHARS:,} characters" in result.output


SHARED = """\
cadence: 1
name: T
sender: {name: D, email: dana@acme.example}
settings: {skip_weekends: false, timezone: UTC, default_timezone: UTC}
templates:
  t: {subject: "S", body: %s}
steps:
  - {id: s1, day: 1, email: {template: t, send: {at: "09:00"}}}
"""

_DOUBLED = "a list or mapping would be"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param(
            "{% set ns=namespace(a=[1]) %}{% for i in range(30) %}"
            "{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ ns.a }}",
            _DOUBLED,
            id="list-literal-doubled-in-a-loop",
        ),
        pytest.param(
            "{% set a = [1] %}" + "{% set a = [a, a] %}" * 30 + "{{ a }}",
            _DOUBLED,
            id="thirty-top-level-sets",
        ),
        pytest.param(
            "{% set ns=namespace(a=(1,)) %}{% for i in range(60) %}"
            "{% set ns.a = (ns.a, ns.a) %}{% endfor %}{{ {ns.a: 1} | length }}",
            _DOUBLED,
            id="tuple-hashed-as-a-key",
        ),
        pytest.param(
            "{% set ns=namespace(a=[1]) %}{% for i in range(30) %}"
            "{% set ns.a = [ns.a] * 2 %}{% endfor %}{{ ns.a }}",
            _DOUBLED,
            id="repeated-list",
        ),
        pytest.param(
            "{% set ns=namespace(a=[1]) %}{% for i in range(30) %}"
            "{% set ns.a = [{}, {}] | map(attribute='x', default=ns.a) | list %}{% endfor %}"
            "{{ ns.a }}",
            _DOUBLED,
            id="filter-default",
        ),
        pytest.param(
            "{% set ns=namespace(a=1) %}{% for i in range(30) %}"
            "{% set ns.a = dict(x=ns.a, y=namespace(z=ns.a)) %}{% endfor %}{{ ns.a }}",
            _DOUBLED,
            id="dict-and-namespace-calls",
        ),
        pytest.param(
            "{% set a = [1] %}{% for i in range(30) %}{% set _ = a.extend(a) %}{% endfor %}"
            "{{ a | length }}",
            _DOUBLED,
            id="list-extended-by-itself",
        ),
        pytest.param(
            "{% set a = [] %}{% set b = [a, a] %}{% set _ = a.append('x' * 900000) %}{{ b }}",
            "cannot change once it is inside another one",
            id="list-changed-inside-another",
        ),
        pytest.param(
            "{{ ('x' * 1000000).translate({120: 'y' * 1000}) | length }}",
            "a translated value",
            id="translate",
        ),
    ],
)
def test_a_shared_structure_is_a_render_error_not_a_hang(
    tmp_path: Path, body: str, says: str
) -> None:
    """Audit A and B: `[a, a]` doubles what `str()` or `hash()` walks in one C call."""
    path = write_cadence(tmp_path, SHARED % json.dumps(body))
    tracemalloc.start()
    try:
        result = CliRunner().invoke(cadence, ["preview", str(path), "--sample"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * _MB, f"peak {peak / _MB:.0f} MB"
    assert result.exit_code == 1, result.output
    assert "does not render for" in result.output
    assert says in result.output


def test_slow_calls_cannot_add_up_past_the_time_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit C: twenty slow filter calls are twenty steps, far from a step-counted check."""
    monkeypatch.setattr(templates, "MAX_RENDER_SECONDS", -1.0)  # late after the first call
    body = "{% for i in range(20) %}{% set x = ('a. ' * 300)|urlize %}{% endfor %}done"
    path = write_cadence(tmp_path, SHARED % json.dumps(body))
    result = CliRunner().invoke(cadence, ["preview", str(path), "--sample"])
    assert result.exit_code == 1, result.output
    assert "the render took longer than -1 seconds" in result.output


def test_ordinary_containers_render_as_before() -> None:
    source = (
        "{% set l = [] %}{% for i in range(3) %}{% set _ = l.append(i) %}{% endfor %}{{ l }}"
        " {{ {'a': (1, 2)} }} {% for a, b in [(1, 2), (3, 4)] %}{{ a }}{{ b }}{% endfor %}"
        " {{ [[1], [2]] | sum(start=[]) }} {{ [(1,), (2,)] | sum(start=()) }}"
        " {% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}"
        "{% endfor %}{{ ns.n }} {{ [1, 2] * 2 }} {{ (1,) + (2,) }} {{ 'ab'.translate({97: 'x'}) }}"
    )
    assert render(source, CONTACT) == (
        "[0, 1, 2] {'a': (1, 2)} 1234 [1, 2] (1, 2) 3 [1, 2, 1, 2] (1, 2) xb"
    )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["[%s]", "(%s,)", "{'k': %s}"]),
            st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=25,
    )
)
@settings(max_examples=60, deadline=None)
def test_nested_literals_render_or_stop_at_the_size_bound(
    program: list[tuple[str, list[int]]],
) -> None:
    """Each `{% set vN = … %}` nests earlier values (or a 50,000-char string): the render
    stops exactly when one of them would pass the bound, and otherwise renders."""
    sizes = [50_000]
    lines = ["{% set v0 = 'x' * 50000 %}"]
    too_large = False
    for n, (shape, picks) in enumerate(program, start=1):
        chosen = [p % len(sizes) for p in picks]
        if shape.startswith("{"):  # one key, 'k', of size 1
            chosen = chosen[:1]
        names = ", ".join(f"v{c}" for c in chosen)
        lines.append(f"{{% set v{n} = {shape % names} %}}")
        size = 1 + sum(sizes[c] for c in chosen) + (1 if shape.startswith("{") else 0)
        too_large = too_large or size > MAX_BODY_CHARS
        sizes.append(size)
    lines.append(f"{{{{ v{len(program)} | length }}}}")
    source = "".join(lines)
    if too_large:
        with pytest.raises(RenderLimit, match=_DOUBLED):
            render(source, CONTACT)
    else:
        render(source, CONTACT)
