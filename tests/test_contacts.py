"""Contact lists: every format, every bad-input message, and streaming."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence_engine.cli import cadence
from cadence_engine.engine.contacts import read_contacts
from cadence_engine.engine.errors import InputError, UsageError
from cadence_engine.engine.limits import MAX_FIELD_CHARS

CASES = Path(__file__).parent / "cases" / "contacts"
CADENCES = Path(__file__).parent.parent / "cadences"
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["good.csv", "good.json", "good.jsonl", "good.yaml"])
def test_every_format_reads_the_same_two_contacts(name: str) -> None:
    contacts = list(read_contacts(CASES / name))
    assert [c.email for c in contacts] == ["ava@northwind.example", "ben@globex.example"]
    assert [c.row for c in contacts] == [1, 2]
    assert contacts[0].timezone == "America/New_York"
    assert contacts[1].timezone is None  # empty/absent cells are not fields
    assert contacts[0].fields["first_name"] == "Ava"
    assert contacts[1].fields["first_name"] == "Ben"


def test_csv_headers_are_normalised_and_unknown_columns_kept() -> None:
    ava, ben = read_contacts(CASES / "good.csv")
    assert ava.fields == {
        "email": "ava@northwind.example",
        "first_name": "Ava",
        "last_name": "Nakamura",
        "timezone": "America/New_York",
        "team_size": "25",
    }
    assert ben.fields["last_name"] == "Smith, Jr."
    assert "timezone" not in ben.fields


def test_json_values_become_text() -> None:
    _, ben = read_contacts(CASES / "good.jsonl")
    assert ben.fields == {"email": "ben@globex.example", "first_name": "Ben", "vip": "true"}


def test_one_bad_row_fails_the_whole_list_with_every_row_listed() -> None:
    reader = read_contacts(CASES / "bad-rows.csv")
    with pytest.raises(InputError) as info:
        next(reader)
    text = str(info.value)
    name = str(CASES / "bad-rows.csv")
    assert text.splitlines()[0] == f"{name}: 5 bad rows"
    assert f"{name}:3: row 2, column email: 'not-an-email' is not an email address" in text
    assert f"{name}:4: row 3, column timezone: 'Mars/Olympus' is not an IANA time zone" in text
    assert f"{name}:5: row 4, column email: duplicate of row 1 (AVA@northwind.example)" in text
    assert f"{name}:6: row 5, column email: email is empty" in text
    assert f"{name}:7: row 6, column -: 4 cells but the header has 3 columns" in text
    assert "--skip-invalid" in text


def test_skip_invalid_drops_bad_rows_and_reports_them() -> None:
    reader = read_contacts(CASES / "bad-rows.csv", skip_invalid=True)
    assert [c.email for c in reader] == ["ava@northwind.example", "eve@soylent.example"]
    assert [(e.row, e.column) for e in reader.skipped] == [
        (2, "email"),
        (3, "timezone"),
        (4, "email"),
        (5, "email"),
        (6, "-"),
    ]
    assert reader.count == 2


def test_bad_jsonl_rows_name_line_and_reason() -> None:
    reader = read_contacts(CASES / "bad-rows.jsonl", skip_invalid=True)
    assert [c.email for c in reader] == ["ava@northwind.example"]
    assert [str(e).split(": ", 1)[1] for e in reader.skipped] == [
        'row 2, column tags: nested value ["a"] is not supported',
        "row 3, column -: expected an object with an 'email' key, got list",
        "row 4, column -: invalid JSON at column 19: Expecting ',' delimiter",
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "no-email-column.csv",
            "no-email-column.csv:1: no 'email' column (columns: name, company)",
        ),
        ("empty.csv", "empty.csv: the file is empty"),
        ("header-only.csv", "header-only.csv: has a header but no contacts"),
        ("latin1.csv", "latin1.csv:3: not UTF-8 text (byte 0xE9 at offset 65)"),
    ],
)
def test_file_level_problems(name: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        list(read_contacts(CASES / name, skip_invalid=True))
    assert str(info.value).startswith(f"{CASES / name}"[: -len(name)] + message)
    assert info.value.hint  # always says what to do


def test_an_unknown_extension_is_a_usage_error_that_names_the_option() -> None:
    with pytest.raises(UsageError, match=r"list\.txt: cannot tell the contact list format"):
        list(read_contacts(CASES / "list.txt"))
    result = CliRunner().invoke(
        cadence, ["plan", str(CADENCES / "heads-of-platform.yaml"), "--contacts",
                  str(CASES / "list.txt"), "--send-at", "09:00"]
    )  # fmt: skip
    assert result.exit_code == 2 and "--contacts-format" in result.output


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_json_integers_stay_text_and_a_repeated_key_is_a_bad_row(
    tmp_path: Path, suffix: str
) -> None:
    records = [
        '{"email": "a@x.example", "seats": 1%s}' % ("0" * 5000),  # int() refuses these
        '{"email": "b@x.example", "seats": -0, "n": 12345678901234567890123}',
        '{"email": "c@x.example", "email": "d@x.example"}',
        '{"email": "e@x.example", "seats": 1%s}' % ("0" * MAX_FIELD_CHARS),
    ]
    path = tmp_path / f"list{suffix}"
    text = "[\n" + ",\n".join(records) + "\n]\n" if suffix == ".json" else "\n".join(records)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        list(read_contacts(path))
    assert "row 3, column email: the key is given twice in the record" in str(info.value)
    assert "row 4, column seats: the value has 10,001 characters" in str(info.value)
    a, b = read_contacts(path, skip_invalid=True)
    assert a.fields["seats"] == "1" + "0" * 5000
    assert (b.fields["seats"], b.fields["n"]) == ("-0", "12345678901234567890123")


def test_format_override_reads_an_unknown_extension() -> None:
    (c,) = read_contacts(CASES / "list.txt", fmt="csv")
    assert c.email == "ava@northwind.example"


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"nope\.csv: no such file"):
        list(read_contacts(tmp_path / "nope.csv"))


def _big_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("email,first_name,company,timezone\n")
        for i in range(rows):
            f.write(f"person{i}@example.com,Person{i},Company {i % 97},Europe/Berlin\n")


def _peak(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "yaml"])
def test_a_huge_list_is_streamed_not_loaded(tmp_path: Path, fmt: str) -> None:
    rows = 8_000 if fmt != "yaml" else 1_200  # the pure-Python YAML parser is slow
    path = tmp_path / f"big.{fmt}"
    if fmt == "csv":
        _big_csv(path, rows)
    elif fmt == "yaml":
        lines = [
            f"- email: p{i}@example.com\n  first_name: P{i}\n  company: Company {i % 97}\n"
            "  timezone: Europe/Berlin\n"
            for i in range(rows)
        ]
        path.write_text("".join(lines), encoding="utf-8")
    else:
        # The same fields as the CSV rows: the records share their keys, so what holding
        # costs is mostly the values.
        lines = [
            f'{{"email": "p{i}@example.com", "first_name": "P{i}", '
            f'"company": "Company {i % 97}", "timezone": "Europe/Berlin"}}'
            for i in range(rows)
        ]
        text = "\n".join(lines) if fmt == "jsonl" else "[\n" + ",\n".join(lines) + "\n]"
        path.write_text(text, encoding="utf-8")
    reader = read_contacts(path)
    assert isinstance(reader, Iterator)
    # The first contact read imports the format's parser: that is not the list's memory
    # (run on its own, the YAML case measured the import, not the stream).
    next(reader)
    counted: list[int] = []

    def stream() -> None:
        counted.append(sum(1 for _ in read_contacts(path)))

    streaming = _peak(stream)
    holding = _peak(lambda: list(read_contacts(path)))
    assert counted == [rows]
    # Only the set of seen addresses (for duplicates) grows with the list; holding the
    # contacts themselves costs several times more.
    assert streaming * 3 < holding, (streaming, holding)


@pytest.mark.parametrize(
    ("header", "row"),
    [
        ("email;first_name;company", 'ava@northwind.example;Ava;"Northwind; Inc"'),
        ("email\tfirst_name\tcompany", "ava@northwind.example\tAva\tNorthwind; Inc"),
        ("\ufeffEmail ; First Name;Company", 'ava@northwind.example;Ava;"Northwind; Inc"'),
    ],
    ids=["semicolon", "tab", "semicolon-bom-spaced-header"],
)
def test_csv_with_semicolons_or_tabs_is_read_by_its_header(
    tmp_path: Path, header: str, row: str
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(f"{header}\r\n{row}\r\n", encoding="utf-8")
    (c,) = read_contacts(path)
    assert c.email == "ava@northwind.example"
    assert c.fields == {
        "email": "ava@northwind.example",
        "first_name": "Ava",
        "company": "Northwind; Inc",
    }


def test_an_unclosed_quote_is_a_bad_row_not_a_cell_that_swallows_the_rest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        'email,first_name\nava@northwind.example,"Ava\nben@globex.example,Ben\n', encoding="utf-8"
    )
    with pytest.raises(InputError) as info:
        list(read_contacts(path))
    assert "list.csv:2: row 1" in str(info.value)
    assert "never closed" in str(info.value) and "end of the file" in str(info.value)


def test_a_stray_quote_after_a_quoted_cell_is_a_bad_row_and_reading_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        'email,first_name\nava@northwind.example,"Av"a\nben@globex.example,5" Ben\n',
        encoding="utf-8",
    )
    reader = read_contacts(path, skip_invalid=True)
    assert [c.fields["first_name"] for c in reader] == ['5" Ben']
    assert [(e.row, e.column) for e in reader.skipped] == [(1, "-")]


def test_yaml_rows_keep_values_as_written_and_refuse_tags_anchors_duplicates(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "- {email: ava@x.example, zip: 01234, note: ~}\n"
        "- {email: ben@x.example, first_name: !!python/object:os.system x}\n"
        "- &a {email: cy@x.example}\n"
        "- {email: dee@x.example, email: eve@x.example}\n"
        "- {email: fay@x.example}\n",
        encoding="utf-8",
    )
    reader = read_contacts(path, skip_invalid=True)
    contacts = list(reader)
    assert [c.email for c in contacts] == ["ava@x.example", "fay@x.example"]
    assert contacts[0].fields["zip"] == "01234" and "note" not in contacts[0].fields
    reasons = [str(e) for e in reader.skipped]
    assert len(reasons) == 3
    assert "c.yaml:2: row 2" in reasons[0] and "tag !!python/object:os.system is not" in reasons[0]
    assert "c.yaml:3: row 3" in reasons[1] and "anchors and aliases" in reasons[1]
    assert "c.yaml:4: row 4" in reasons[2] and "duplicate key 'email'" in reasons[2]


@pytest.mark.parametrize("export", ["salesforce.csv", "hubspot.csv", "outlook.csv"])
def test_crm_exports_give_the_standard_fields(export: str) -> None:
    reader = read_contacts(CASES / export)
    (ava,) = reader
    assert ava.email == "ava@northwind.example"
    assert ava.timezone == "Europe/Paris"
    assert {k: ava.fields[k] for k in ("first_name", "last_name", "company", "phone")} == {
        "first_name": "Ava",
        "last_name": "Nakamura",
        "company": "Northwind",
        "phone": "+33 1 23 45 67 89",
    }
    # Outlook's Title is the honorific: the column named `title` wins over `Job Title`.
    assert ava.fields["title"] == ("Dr." if export == "outlook.csv" else "Head of Platform")
    assert reader.warnings == []


@pytest.mark.parametrize("header", ["Time Zone", "time_zone", "tz", "TZ", "Time-Zone", "timezone"])
def test_every_spelling_of_the_zone_column_is_read(header: str, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(f"E-mail Address,{header}\nava@northwind.example,Europe/Paris\n")
    (ava,) = read_contacts(path)
    assert (ava.email, ava.timezone) == ("ava@northwind.example", "Europe/Paris")


def test_a_column_that_looks_like_a_zone_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("email,Contact Time Zone\nava@northwind.example,Europe/Paris\n")
    reader = read_contacts(path)
    (ava,) = reader
    assert ava.timezone is None
    assert reader.warnings == [
        f"{path}: column 'contact_time_zone' looks like a time zone but is not read as one, "
        "so its contacts are planned in the default zone; name the column 'timezone'"
    ]


def test_plan_uses_a_crm_zone_and_prints_the_warning(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cadence_engine.cli import cadence

    cad = ROOT / "cadences" / "event-follow-up.yaml"
    result = CliRunner().invoke(
        cadence, ["plan", str(cad), "--contacts", str(CASES / "hubspot.csv"), "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    assert {row["zone"] for row in json.loads(result.stdout)["rows"]} == {"Europe/Paris"}
    odd = tmp_path / "odd.csv"
    odd.write_text("email,zone\nava@northwind.example,Europe/Paris\n")
    result = CliRunner().invoke(cadence, ["plan", str(cad), "--contacts", str(odd)])
    assert "warning: " in result.stderr and "'zone' looks like a time zone" in result.stderr


@pytest.mark.parametrize(("zone", "meant"), [("EST", "America/New_York"), ("CET", "Europe/Paris")])
def test_a_legacy_zone_is_a_bad_row_with_a_suggestion(
    zone: str, meant: str, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(f"email,timezone\nava@northwind.example,{zone}\nben@globex.example,UTC\n")
    with pytest.raises(InputError) as caught:
        list(read_contacts(path))
    assert f"column timezone: '{zone}' is an abbreviation" in str(caught.value)
    assert f"(did you mean {meant}?)" in str(caught.value)
    reader = read_contacts(path, skip_invalid=True)
    assert [c.email for c in reader] == ["ben@globex.example"]
    assert [e.row for e in reader.skipped] == [1]


def test_a_zone_like_column_beside_a_real_zone_column_is_not_warned_about(
    tmp_path: Path,
) -> None:
    # `Time Zone` is read as `timezone`: contacts are planned in its zone, so a warning
    # that they are planned in the default zone would be wrong.
    path = tmp_path / "list.csv"
    path.write_text(
        "E-mail Address,Time Zone,Contact Time Zone\n"
        "ava@northwind.example,Europe/Paris,Europe/Paris\n"
    )
    reader = read_contacts(path)
    (ava,) = reader
    assert ava.timezone == "Europe/Paris"
    assert reader.warnings == []
    # Also when the zone column turns up only in a later record.
    listed = tmp_path / "list.jsonl"
    listed.write_text(
        '{"email": "ava@northwind.example", "contact_time_zone": "Europe/Paris"}\n'
        '{"email": "ben@globex.example", "timezone": "Europe/Paris"}\n'
    )
    reader = read_contacts(listed)
    assert [c.timezone for c in reader] == [None, "Europe/Paris"]
    assert reader.warnings == []


_OLD_ZONE_LIKE = r"(^|_)(tz|zone|timezone|time_zone)($|_)|zone"
_ZONE_NAMES = [
    "tz", "TZ", "tz_name", "contact_tz", "a_tz_b", "tzone", "tza", "atz", "a_tzb", "tz_",
    "zone", "zones", "timezone", "time_zone", "hs_timezone", "contact_time_zone", "ozone",
    "zon", "time", "timez", "tim_ezone", "", "_", "utc_offset",
]  # fmt: skip


@settings(max_examples=1000)
@given(st.one_of(st.sampled_from(_ZONE_NAMES), st.text("tzoneim_aTZ", max_size=12)))
def test_the_zone_like_pattern_matches_what_it_matched_before(column: str) -> None:
    import re

    from cadence_engine.engine.contact_headers import _ZONE_LIKE

    assert (_ZONE_LIKE.search(column) is None) == (re.search(_OLD_ZONE_LIKE, column) is None)


def test_the_zone_like_examples_are_the_ones_matched() -> None:
    from cadence_engine.engine.contact_headers import looks_like_zone

    assert [n for n in _ZONE_NAMES if looks_like_zone(n)] == [
        "tz", "tz_name", "contact_tz", "a_tz_b", "tzone", "tz_", "zone", "zones",
        "time_zone", "hs_timezone", "contact_time_zone", "ozone", "tim_ezone",
    ]  # fmt: skip


_JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=60),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=50), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=1000)
@given(_JSON_VALUES, st.integers(0, 90))
def test_a_nested_value_is_shown_as_json_dumps_begins_it(value: object, limit: int) -> None:
    from cadence_engine.engine.contact_sources import _json_prefix

    assert _json_prefix(value, limit) == json.dumps(value, default=str)[:limit]


def test_a_nested_value_5000_deep_is_shown_without_recursion() -> None:
    from cadence_engine.engine.contact_sources import _json_prefix

    deep: list[object] = []
    for _ in range(5_000):
        deep = [deep]
    assert _json_prefix({"x": deep}, 40) == '{"x": ' + "[" * 34


def test_the_keys_of_a_record_are_normalised_once_per_key_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cadence_engine.engine import contact_sources

    calls: list[tuple[str, ...]] = []
    normalise = contact_sources.column_names

    def counted(headers: Iterable[str]) -> list[str]:
        names = tuple(headers)
        calls.append(names)
        return normalise(names)

    monkeypatch.setattr(contact_sources, "column_names", counted)
    contact_sources._columns.cache_clear()
    path = tmp_path / "list.jsonl"
    path.write_text(
        "".join(f'{{"E-mail": "c{i}@b.example", "First Name": "C"}}\n' for i in range(50))
        + '{"First Name": "D", "E-mail": "d@b.example"}\n'
    )
    contacts = list(read_contacts(path))
    assert [c.fields["first_name"] for c in contacts] == ["C"] * 50 + ["D"]
    assert calls == [("E-mail", "First Name"), ("First Name", "E-mail")]


def test_an_unreadable_or_utf16_list_is_one_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "list.csv"
    folder.mkdir()
    with pytest.raises(InputError) as caught:
        list(read_contacts(folder))
    assert (caught.value.message, caught.value.hint) == (
        f"{folder}: cannot read: Is a directory",
        None,
    )
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("email\nava@northwind.example\n".encode("utf-16"))
    latin1 = CASES / "latin1.csv"
    for path, message in [
        (utf16, f"{utf16}:1: the file is UTF-16 (it starts with a UTF-16 byte order mark)"),
        (latin1, f"{latin1}:3: not UTF-8 text (byte 0xE9 at offset 65)"),
    ]:
        with pytest.raises(InputError) as caught:
            list(read_contacts(path))
        assert caught.value.message == message
        assert caught.value.hint == "re-save the contact list as UTF-8 (e.g. 'CSV UTF-8' in Excel)"


def test_a_scheduling_only_read_gives_the_same_contacts_rows_and_warnings(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "email,first_name,Contact Time Zone,company\n"
        "ava@northwind.example,Ava,Europe/Paris,Northwind\n"
        "not-an-address,Ben,,Globex\n"
        "cy@globex.example,,,Globex\n"
    )
    full = read_contacts(path, skip_invalid=True)
    slim = read_contacts(path, skip_invalid=True, scheduling_only=True)
    whole, some = list(full), list(slim)
    assert [(c.email, c.timezone, c.row) for c in some] == [
        (c.email, c.timezone, c.row) for c in whole
    ]
    assert [c.fields for c in some] == [
        {"email": "ava@northwind.example", "contact_time_zone": "Europe/Paris"},
        {"email": "cy@globex.example"},
    ]
    assert whole[0].fields["company"] == "Northwind"
    assert len(slim.warnings) == 1 and len(slim.skipped) == 1
    assert (slim.skipped, slim.warnings, slim.count) == (full.skipped, full.warnings, full.count)
