"""The documented limits on cadence files and contact lists (issue 8, defect 5): each is
checked before the expensive work, and breaking it is a finding with file:line:col or a
row error — never an internal error, a RecursionError or minutes of parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence_engine.cli import cadence
from cadence_engine.engine.errors import InputError
from cadence_engine.engine.limits import (
    MAX_CADENCE_BYTES,
    MAX_CAMPAIGN_DAY,
    MAX_COLUMNS,
    MAX_FIELD_CHARS,
    MAX_NESTING,
    MAX_RECORD_BYTES,
)
from tests.helpers.runner_env import ONE_EMAIL, write_cadence


def _cli(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cadence, list(args), env=env)
    assert "Traceback" not in result.output and "internal error" not in result.output
    return result


# --- cadence files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "where", "says"),
    [
        ("x: " + "[" * 20_000 + "]" * 20_000, "12:67", f"more than {MAX_NESTING} levels"),
        ("x: {" + "a: {" * 5_000 + "}" * 5_001, "12:", f"more than {MAX_NESTING} levels"),
        ("x:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(300)), "76:", "levels"),
        ("x: [" + ",".join(["1"] * 200_000) + "]", "12:20004", "more than 10,000 entries"),
        ("x: " + "1" * 4_400, "12:4", "a number of 4,400 characters"),
        ("x: '" + "1" * 4_400 + "'", None, "unknown key"),  # a quoted number is text
    ],
    ids=["flow-20000-deep", "flow-mapping", "block-300-deep", "200k-items", "long-int", "text"],
)
def test_cadence_limits_are_findings(tmp_path: Path, extra: str, where: str, says: str) -> None:
    path = write_cadence(tmp_path, ONE_EMAIL + extra + "\n")
    result = _cli("validate", str(path))
    assert result.exit_code == 1, result.output
    assert says in result.output, result.output
    if where is not None:
        assert f"{path}:{where}" in result.output and "[yaml/too-large]" in result.output


def test_a_cadence_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = write_cadence(tmp_path, ONE_EMAIL + "# " + "x" * MAX_CADENCE_BYTES + "\n")
    result = _cli("validate", str(path))
    assert result.exit_code == 1
    assert (
        f"{path}:1:1:" in result.output and f"at most {MAX_CADENCE_BYTES:,} bytes" in result.output
    )


def test_fmt_refuses_deep_nesting_without_a_recursion_error(tmp_path: Path) -> None:
    deep = "x:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(300))
    path = write_cadence(tmp_path, ONE_EMAIL + deep)
    result = _cli("fmt", "--check", str(path))
    assert result.exit_code == 1, result.output
    assert "not formatted" in result.output and "[yaml/too-large]" in result.output


def test_launch_refuses_a_lone_surrogate_as_a_finding(tmp_path: Path) -> None:
    path = write_cadence(tmp_path, ONE_EMAIL.replace("name: Kill matrix", 'name: "K \\ud800"'))
    contacts = tmp_path / "c.csv"
    contacts.write_text("email\na@b.example\n", encoding="utf-8")
    for args in (
        ["validate", str(path)],
        ["launch", str(path), "--contacts", str(contacts), "--now", "2026-03-02T08:00Z"],
    ):
        result = _cli(*args, env={"CADENCE_DB": str(tmp_path / "s.db")})
        assert result.exit_code == 1, result.output
        assert f"{path}:2:" in result.output and "lone surrogate" in result.output


@pytest.mark.parametrize("bom", [False, True], ids=["no-bom", "bom"])
def test_utf16_cadence_is_named_as_an_encoding_problem(tmp_path: Path, bom: bool) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(ONE_EMAIL.encode("utf-16" if bom else "utf-16-le"))
    result = _cli("validate", str(path))
    assert result.exit_code == 1
    assert "UTF-16" in result.output and "[yaml/encoding]" in result.output


# --- contact lists ----------------------------------------------------------------------


def _launch(tmp_path: Path, contacts: Path) -> Result:
    path = write_cadence(tmp_path)
    return _cli(
        "launch", str(path), "--contacts", str(contacts), "--now", "2026-03-02T08:00Z",
        env={"CADENCE_DB": str(tmp_path / "state.db")},
    )  # fmt: skip


def test_a_header_with_too_many_columns_is_refused_first(tmp_path: Path) -> None:
    contacts = tmp_path / "c.csv"
    header = ",".join(["email", *(f"c{i}" for i in range(100_000))])
    contacts.write_text(header + "\na@b.example\n", encoding="utf-8")
    result = _launch(tmp_path, contacts)
    assert result.exit_code == 1
    assert f"{contacts}:1:" in result.output and f"at most {MAX_COLUMNS:,}" in result.output


def test_duplicate_columns_in_a_wide_header_are_found(tmp_path: Path) -> None:
    contacts = tmp_path / "c.csv"
    header = ",".join(["email", *(f"c{i}" for i in range(MAX_COLUMNS - 2)), "C5"])
    contacts.write_text(header + "\na@b.example\n", encoding="utf-8")
    result = _launch(tmp_path, contacts)
    assert result.exit_code == 1 and "column 'c5' appears more than once" in result.output


def _rows_refused(result: Result, *says: str) -> None:
    assert result.exit_code == 1, result.output
    for text in says:
        assert text in result.output, result.output


def test_deeply_nested_json_is_refused(tmp_path: Path) -> None:
    contacts = tmp_path / "c.json"
    deep = "[" * 2_000 + "]" * 2_000
    contacts.write_text(f'[{{"email": "a@b.example", "x": {deep}}}]', encoding="utf-8")
    _rows_refused(_launch(tmp_path, contacts), f"nested more than {MAX_NESTING} levels")


def test_deeply_nested_jsonl_is_a_bad_row(tmp_path: Path) -> None:
    contacts = tmp_path / "c.jsonl"
    deep = "[" * 2_000 + "]" * 2_000
    contacts.write_text(
        '{"email": "ok@b.example"}\n' + f'{{"email": "a@b.example", "x": {deep}}}\n',
        encoding="utf-8",
    )
    _rows_refused(_launch(tmp_path, contacts), "row 2", f"nested more than {MAX_NESTING}")


_DEEP_5000 = "[" * 5_000 + "]" * 5_000
_TOO_DEEP_ROW = (
    f"row 2, column -: values nested more than {MAX_NESTING} levels deep; "
    "contact fields are plain values"
)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "c.json",
            '[{"email": "ok@b.example"},\n'
            f' {{"email": "a@b.example", "x": {_DEEP_5000}}},\n'
            ' {"email": "c@b.example", "s": "]]}"}]\n',
        ),
        (
            "c.jsonl",
            '{"email": "ok@b.example"}\n'
            f'{{"email": "a@b.example", "x": {_DEEP_5000}}}\n'
            '{"email": "c@b.example", "s": "]]}"}\n',
        ),
        # The decoder itself recurses too deep on the record, not only on a field.
        ("c.json", f'[{{"email": "ok@b.example"}},\n{_DEEP_5000},\n{{"email": "c@b.example"}}]'),
        ("c.jsonl", f'{{"email": "ok@b.example"}}\n{_DEEP_5000}\n{{"email": "c@b.example"}}\n'),
    ],
    ids=["json-field", "jsonl-field", "json-record", "jsonl-record"],
)
def test_json_nested_5000_deep_is_a_row_error_and_reading_goes_on(
    tmp_path: Path, name: str, text: str
) -> None:
    from cadence_engine.engine.contacts import read_contacts

    contacts = tmp_path / name
    contacts.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        list(read_contacts(contacts))
    assert f"{contacts}:2: {_TOO_DEEP_ROW}" in str(caught.value)
    reader = read_contacts(contacts, skip_invalid=True)
    assert [c.email for c in reader] == ["ok@b.example", "c@b.example"]
    assert [str(e) for e in reader.skipped] == [f"{contacts}:2: {_TOO_DEEP_ROW}"]
    _rows_refused(_launch(tmp_path, contacts), _TOO_DEEP_ROW)


def test_json_nested_below_the_decoders_limit_is_a_plain_row_error(tmp_path: Path) -> None:
    # Decoded (no pre-scan of every record for its depth): the row names the nested value
    # by a short prefix, written without recursion.
    deep = "[" * 500 + "]" * 500
    contacts = tmp_path / "c.json"
    contacts.write_text(f'[{{"email": "a@b.example", "x": {deep}}}]', encoding="utf-8")
    from cadence_engine.engine.contacts import read_contacts

    reader = read_contacts(contacts, skip_invalid=True)
    assert list(reader) == []
    assert [str(e) for e in reader.skipped] == [
        f"{contacts}:1: row 1, column x: nested value {'[' * 40} is not supported"
    ]


def test_deeply_nested_yaml_is_a_bad_row(tmp_path: Path) -> None:
    contacts = tmp_path / "c.yaml"
    deep = "[" * 3_000 + "]" * 3_000
    contacts.write_text(
        f"- email: ok@b.example\n- email: a@b.example\n  x: {deep}\n", encoding="utf-8"
    )
    _rows_refused(_launch(tmp_path, contacts), "row 2", f"nested more than {MAX_NESTING}")


def test_a_python_tag_in_contact_yaml_is_a_bad_row(tmp_path: Path) -> None:
    contacts = tmp_path / "c.yaml"
    contacts.write_text(
        "- email: ok@b.example\n"
        "- !!python/object/apply:os.system [echo owned]\n"
        "- email: c@b.example\n  first_name: !!python/name:os.system\n",
        encoding="utf-8",
    )
    _rows_refused(
        _launch(tmp_path, contacts),
        "row 2",
        "YAML tag !!python/object/apply:os.system is not allowed",
        "row 3",
    )


@pytest.mark.parametrize("suffix", [".csv", ".json"])
@pytest.mark.parametrize("bom", [False, True], ids=["no-bom", "bom"])
def test_utf16_contact_lists_are_named(tmp_path: Path, suffix: str, bom: bool) -> None:
    contacts = tmp_path / f"c{suffix}"
    text = "email\na@b.example\n" if suffix == ".csv" else '[{"email": "a@b.example"}]'
    contacts.write_bytes(text.encode("utf-16" if bom else "utf-16-le"))
    result = _launch(tmp_path, contacts)
    assert result.exit_code == 1 and "UTF-16" in result.output, result.output


def test_a_field_over_the_limit_is_a_bad_row(tmp_path: Path) -> None:
    contacts = tmp_path / "c.csv"
    contacts.write_text(
        "email,company\nok@b.example,Ok\nbig@b.example," + "x" * (MAX_FIELD_CHARS + 1) + "\n",
        encoding="utf-8",
    )
    _rows_refused(_launch(tmp_path, contacts), "row 2", f"at most {MAX_FIELD_CHARS:,}")


def test_a_jsonl_line_over_the_limit_is_refused(tmp_path: Path) -> None:
    contacts = tmp_path / "c.jsonl"
    big = json.dumps({"email": "a@b.example", "x": "y" * MAX_RECORD_BYTES})
    contacts.write_text(big + "\n", encoding="utf-8")
    _rows_refused(_launch(tmp_path, contacts), f"longer than {MAX_RECORD_BYTES:,}")


def test_the_readme_lists_every_limit_with_its_value() -> None:
    from cadence_engine.engine import limits
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
    names = [n for n in vars(limits) if n.startswith("MAX_")]
    assert names
    for name in names:
        value = getattr(limits, name)
        shown = f"{value:g} seconds" if isinstance(value, float) else f"{value:,}"
        row = next((line for line in section.splitlines() if f"`{name}`" in line), "")
        assert shown in row, f"{name} = {value} is not in the README's Limits table"


# --- the checks' own shortcuts ------------------------------------------------------------

_WIDE = st.sampled_from(["a", "é", "€", "😀", "\ud800"])  # one to four bytes in UTF-8


@settings(max_examples=300)
@given(st.lists(st.tuples(_WIDE, st.integers(0, 400_000)), max_size=4), st.booleans())
def test_the_size_check_gives_the_size_the_encoded_text_has(
    runs: list[tuple[str, int]], ascii_tail: bool
) -> None:
    # Encoded only when the length cannot tell: the same problem (and byte count) as
    # encoding every text, at and around the limit.
    from cadence_engine.engine.input_checks import _utf8_size, size_problem

    text = "".join(ch * n for ch, n in runs) + ("x" * 300_000 if ascii_tail else "")
    exact = len(text.encode("utf-8", "surrogatepass"))
    assert size_problem(_utf8_size(text)) == size_problem(exact)
    if exact > MAX_CADENCE_BYTES:
        assert _utf8_size(text) == exact


@pytest.mark.parametrize("width", ["a", "é", "😀"])
def test_a_text_just_over_the_limit_is_named_with_its_size(width: str) -> None:
    from cadence_engine.engine.input_checks import text_problem

    n = MAX_CADENCE_BYTES // len(width.encode()) + 1
    text = "a: " + width * n
    found = text_problem(text)
    assert found is not None
    assert f"the file is {len(text.encode()):,} bytes" in found.message
    # Decoded from bytes whose size was checked: not counted again.
    assert text_problem(text, size_checked=True) is None


_QUOTED_PIECES = st.one_of(
    st.sampled_from(["a", " ", "é", "\\\\", "\\n", "\\x41", "\\u00e9", "\\U0001F600", '\\"']),
    st.integers(0xD700, 0xE000).map(lambda c: f"\\u{c:04x}"),
    st.integers(0xD7F0, 0xE010).map(lambda c: f"\\U{c:08X}"),
    st.integers(0xD800, 0xDFFF).map(lambda c: f"\\u{c:04X}"),
)


@settings(max_examples=500)
@given(st.lists(_QUOTED_PIECES, max_size=8).map("".join), st.booleans())
def test_a_surrogate_in_the_values_is_always_found_by_the_text_search(
    quoted: str, plain_too: bool
) -> None:
    # What lets a clean file skip walking its values: a lone surrogate in them comes
    # from an escape (or the character itself) the search over the text finds.
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from cadence_engine.engine.input_checks import (
        _SURROGATE_SOURCE,
        _holds_surrogate,
        surrogate_problem,
    )

    text = f'a: "{quoted}"\n' + (f"b: '{quoted}'\n" if plain_too else "")
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError:
        return
    if _holds_surrogate(data):
        assert _SURROGATE_SOURCE.search(text) is not None
        assert surrogate_problem(text, data) is not None
    else:
        assert surrogate_problem(text, data) is None


def test_a_lone_surrogate_character_in_the_text_is_a_finding_not_a_crash() -> None:
    # libyaml is handed the text as UTF-8, which a lone surrogate cannot be.
    from cadence_engine.engine.loader import LoadProblem, parse

    problem = parse("cadence: 1\nname: a\udcff\n")
    assert isinstance(problem, LoadProblem)
    assert (problem.rule, problem.line, problem.col) == ("yaml/syntax", 2, 8)


SAME = "same_time_as_previous"


def test_the_campaign_day_is_bounded_where_every_command_loads_a_cadence(tmp_path: Path) -> None:
    from cadence_engine.engine.schema import schema

    day = schema()["$defs"]["step"]["properties"]["day"]
    assert day["maximum"] == MAX_CAMPAIGN_DAY  # one bound, stated twice
    contacts = tmp_path / "c.csv"
    contacts.write_text("email,timezone\nn@y.example,America/New_York\n", encoding="utf-8")
    plan = ["--contacts", str(contacts), "--start", "2026-03-02T06:00"]

    def cadence_with(last_day: int) -> str:
        path = tmp_path / f"d{last_day}.yaml"
        path.write_text(
            "cadence: 1\nname: W\nsender: {name: Dana, email: dana@acme.example}\n"
            'templates:\n  a: {subject: "S", body: "B"}\nsteps:\n'
            "  - {id: s1, day: 1, email: {template: a, send: task}}\n"
            f"  - {{id: s2, day: {last_day}, email: {{template: a, send: {SAME}}}}}\n",
            encoding="utf-8",
        )
        return str(path)

    last = cadence_with(MAX_CAMPAIGN_DAY)
    assert _cli("validate", last).exit_code == 0
    planned = _cli("plan", last, *plan, "-f", "csv")
    assert planned.exit_code == 0 and ",s2," in planned.output
    beyond = cadence_with(MAX_CAMPAIGN_DAY + 1)
    for args in (["validate", beyond], ["plan", beyond, *plan], ["timeline", beyond],
                 ["preview", beyond, "--sample"]):  # fmt: skip
        result = _cli(*args)
        assert result.exit_code == 1, result.output
        assert ":8:19: steps[1].day: day is a whole number from 1 to 1000" in result.output
