"""`cadence plan` end to end through click, on the example cadences and contacts."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from cadence_engine.cli import PLAN_FORMATS, cadence
from cadence_engine.engine.compiler import Launch, compile_plan, parse_launch
from cadence_engine.engine.contacts import Contact, read_contacts
from cadence_engine.engine.formats.plan_formats import FORMATS
from cadence_engine.engine.validate import load_cadence
from cadence_engine.engine.when import SendAt

from .conftest import CADENCES

CONTACTS = CADENCES / "contacts.csv"
CASES = Path(__file__).parent / "cases"
START = ["--start", "2026-03-06T07:00", "--send-at", "09:30"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cadence, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_format_choice_is_the_registry() -> None:
    assert tuple(FORMATS) == PLAN_FORMATS


@pytest.mark.parametrize("fmt", PLAN_FORMATS)
@pytest.mark.parametrize("render", [False, True], ids=["plain", "render"])
def test_same_inputs_give_byte_identical_output(fmt: str, render: bool) -> None:
    args = ["plan", str(CADENCES / "heads-of-platform.yaml"), "--contacts", str(CONTACTS)]
    args += [*START, "-f", fmt] + (["--render"] if render else [])
    first, second = run(*args), run(*args)
    assert first[0] == 0, first[2]
    assert first == second
    assert first[1]


def test_jsonl_fast_path_equals_the_planned_rows(example_cadence_path: Path) -> None:
    code, out, _ = run(
        "plan",
        str(example_cadence_path),
        "--contacts",
        str(CONTACTS),
        *START,
        "-f",
        "jsonl",
        "--render",
    )
    assert code == 0
    cad = load_cadence(example_cadence_path)
    launch = parse_launch(cad, "2026-03-06T07:00", "09:30", now=datetime.now(UTC))
    rows = compile_plan(cad, read_contacts(CONTACTS), launch, render=True)
    expected = "".join(json.dumps(r.as_dict(), ensure_ascii=False) + "\n" for r in rows)
    assert out == expected
    assert len(out.splitlines()) == 28 * 7


def test_table_rows_show_the_hand_checked_first_contact(example_cadence_path: Path) -> None:
    code, out, _ = run("plan", str(example_cadence_path), "--contacts", str(CONTACTS), *START)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["CONTACT", "DAY", "STEP", "ACTION"]
    # Launch Fri 6 Mar 07:00 Amsterdam = 01:00 New York; --send-at 09:30 in each zone.
    assert lines[1].split() == [
        "ava.nakamura@northwind.example",
        "1",
        "intro",
        "send",
        "email",
        "Fri",
        "2026-03-06",
        "09:30",
        "America/New_York",
        "2026-03-06",
        "14:30Z",
    ]
    assert "after task call-1  reply to bump" in lines[4]
    assert len(lines) == 1 + 28 * 7


def test_csv_and_json_formats_parse() -> None:
    args = ["plan", str(CADENCES / "event-follow-up.yaml"), "--contacts", str(CONTACTS), *START]
    code, out, _ = run(*args, "-f", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(table) == 28 * 5
    assert table[1]["thread"] == "thanks"
    code, out, _ = run(*args, "-f", "json")
    doc = json.loads(out)
    assert doc["start"] == "2026-03-06T06:00:00Z" and doc["send_at"] == "09:30"
    assert len(doc["rows"]) == 28 * 5


def test_csv_cells_from_contact_data_never_start_a_formula(tmp_path: Path) -> None:
    contacts = tmp_path / "c.csv"
    contacts.write_text(
        "email,company\n=cmd|'/ccalc'!A1@x.example,=HYPERLINK(\"http://evil\")\n"
        "-ab@x.example,+1\nplain@x.example,Acme\n",
        encoding="utf-8",
    )
    cadence_file = tmp_path / "c.yaml"
    cadence_file.write_text(
        "cadence: 1\nname: C\nsender: {name: D, email: d@acme.example}\n"
        "templates:\n  a: {subject: '{{ contact.company }}', body: '{{ contact.company }} b'}\n"
        "steps:\n  - {id: s1, day: 1, email: {template: a, send: task}}\n",
        encoding="utf-8",
    )
    args = ["plan", str(cadence_file), "--contacts", str(contacts), *START, "-f", "csv"]
    code, out, _ = run(*args, "--render")
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["contact"] for r in rows] == [
        "'=cmd|'/ccalc'!A1@x.example", "'-ab@x.example", "plain@x.example"
    ]  # fmt: skip
    assert [r["subject"] for r in rows] == ['\'=HYPERLINK("http://evil")', "'+1", "Acme"]
    assert rows[0]["body"] == '\'=HYPERLINK("http://evil") b'
    code, out, _ = run(*args[:-2], "-f", "jsonl")  # machines get every value as it is
    assert json.loads(out.splitlines()[0])["contact"] == "=cmd|'/ccalc'!A1@x.example"


def test_markdown_is_a_table() -> None:
    args = ["plan", str(CADENCES / "event-follow-up.yaml"), "--contacts", str(CONTACTS), *START]
    code, out, _ = run(*args, "-f", "markdown")
    assert code == 0
    lines = out.splitlines()
    assert lines[2].startswith("| Contact | Day |") and lines[3].startswith("|---|")
    assert all(line.count(" | ") == 8 for line in lines[4:])


def test_choose_at_launch_without_send_at_is_exit_2(example_cadence_path: Path) -> None:
    code, out, err = run("plan", str(example_cadence_path), "--contacts", str(CONTACTS))
    assert code == 2 and out == ""
    assert "step 'intro' is sent at a time chosen at launch" in err and "--send-at" in err


def test_bad_start_is_exit_2(example_cadence_path: Path) -> None:
    code, _, err = run(
        "plan", str(example_cadence_path), "--contacts", str(CONTACTS), "--start", "soon"
    )
    assert code == 2 and "--start 'soon' is not a valid WHEN" in err
    assert "2026-03-02T09:00 (read in America/New_York)" in err  # the cadence's zone
    code, _, err = run("status", "--now", "soon")
    assert code == 2 and "--now 'soon' is not a valid WHEN" in err
    assert "2026-03-02T09:00 (read as UTC)" in err  # as --now reads it


def test_bad_contact_rows_fail_before_any_output(example_cadence_path: Path) -> None:
    bad = CASES / "contacts" / "bad-rows.csv"
    code, out, err = run("plan", str(example_cadence_path), "--contacts", str(bad), *START)
    assert code == 1 and out == ""
    assert f"{bad}: 5 bad rows" in err and "Traceback" not in err


def test_skip_invalid_plans_the_rest_and_reports(example_cadence_path: Path) -> None:
    bad = CASES / "contacts" / "bad-rows.csv"
    code, out, err = run(
        "plan",
        str(example_cadence_path),
        "--contacts",
        str(bad),
        *START,
        "--skip-invalid",
        "-f",
        "jsonl",
    )
    assert code == 0
    assert {json.loads(x)["contact"] for x in out.splitlines()} == {
        "ava@northwind.example",
        "eve@soylent.example",
    }
    assert f"skipped {bad}:3: row 2, column email" in err
    assert "skipped 5 bad rows; planned 2 contacts" in err


def test_one_skipped_row_is_reported_in_the_singular(
    example_cadence_path: Path, tmp_path: Path
) -> None:
    contacts = tmp_path / "list.csv"
    contacts.write_text("email\nava@northwind.example\nnot-an-email\n", encoding="utf-8")
    code, _, err = run(
        "plan", str(example_cadence_path), "--contacts", str(contacts), *START, "--skip-invalid"
    )
    assert code == 0
    assert f"skipped {contacts}:3: row 2, column email: 'not-an-email'" in err
    assert "skipped 1 bad row; planned 1 contact\n" in err


def test_mermaid_plan_is_a_gantt_on_real_dates() -> None:
    code, out, _ = run(
        "plan",
        str(CADENCES / "event-follow-up.yaml"),
        "--contacts",
        str(CONTACTS),
        *START,
        "-f",
        "mermaid",
    )
    assert code == 0
    assert out.startswith("```mermaid\ngantt\n")
    assert ":s1, 2026-03-06, 1d" in out and "excludes weekends" in out


def test_compile_plan_is_lazy_over_contacts(example_cadence_path: Path) -> None:
    cad = load_cadence(example_cadence_path)

    def endless() -> Iterator[Contact]:
        n = 0
        while True:
            n += 1
            yield Contact(f"p{n}@example.com", {"email": f"p{n}@example.com"}, None, n)

    launch = Launch(datetime(2026, 3, 6, tzinfo=UTC), SendAt(time_of_day=time(15, 0)))
    rows = compile_plan(cad, endless(), launch)
    assert next(rows).contact == "p1@example.com"


def test_render_workers_give_the_same_bytes_as_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More contacts than one chunk, so the worker processes really take part.
    contacts = tmp_path / "many.csv"
    with contacts.open("w", encoding="utf-8") as f:
        f.write("email,first_name,company,timezone\n")
        for i in range(2600):
            zone = ["Europe/Berlin", "America/Chicago", ""][i % 3]
            f.write(f"p{i}@example.com,Name{i % 40},Company {i % 7},{zone}\n")
    args = ["plan", str(CADENCES / "heads-of-platform.yaml"), "--contacts", str(contacts)]
    args += [*START, "-f", "jsonl", "--render"]
    outputs = []
    for workers in ("0", "2"):
        monkeypatch.setenv("CADENCE_WORKERS", workers)
        code, out, err = run(*args)
        assert code == 0, err
        outputs.append(out)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 2600 * 7
    first = json.loads(outputs[0].splitlines()[3])
    assert (first["step"], first["subject"]) == ("bump-2", "Re: Quick follow-up, Name0")


def test_choose_at_launch_hint_names_hh_mm_and_a_date_time(example_cadence_path: Path) -> None:
    code, _, err = run("plan", str(example_cadence_path), "--contacts", str(CONTACTS))
    assert code == 2 and "Traceback" not in err
    hint = err.split("hint:", 1)[1]
    assert "HH:MM" in hint and "2026-03-02T09:00" in hint and "2026-03-02T09:00Z" in hint


def test_markdown_escapes_pipes_and_html_from_contact_data(tmp_path: Path) -> None:
    contacts = tmp_path / "list.csv"
    contacts.write_text(
        'email,first_name,company\nava@northwind.example,"A|v<b>a","R&D | Ops"\n',
        encoding="utf-8",
    )
    args = ["plan", str(CADENCES / "event-follow-up.yaml"), "--contacts", str(contacts), *START]
    code, out, _ = run(*args, "-f", "markdown", "--render")
    assert code == 0
    rows = out.splitlines()[4:]
    assert rows and all(line.count(" | ") == 10 for line in rows)  # 11 cells each
    assert "<b>" not in out and "A\\|v&lt;b&gt;a" in out
    assert "&lt;dana@acme.example&gt;" in out or "<dana@" not in out


@pytest.mark.parametrize(
    ("send_at", "day_one", "why"),
    [
        ("2026-03-07T10:00Z", "2026-03-09T10:00:00Z", "Sat 2026-03-07"),  # a Saturday
        ("2026-12-25T10:00Z", "2026-12-28T10:00:00Z", "Fri 2026-12-25"),  # a holiday
    ],
)
def test_send_at_on_a_day_off_moves_to_the_next_campaign_day_with_a_note(
    send_at: str, day_one: str, why: str, tmp_path: Path
) -> None:
    contacts = tmp_path / "c.csv"
    contacts.write_text("email,timezone\nava@northwind.example,UTC\n", encoding="utf-8")
    code, out, _ = run(
        "plan", str(CADENCES / "heads-of-platform.yaml"), "--contacts", str(contacts),
        "--start", "2026-03-02T00:00Z", "--send-at", send_at, "-f", "json",
    )  # fmt: skip
    assert code == 0
    first = json.loads(out)["rows"][0]
    assert first["due_utc"] == day_one
    assert first["moved"] == f"--send-at {why} is not a campaign day, day 1 is the next"


def test_send_at_before_start_is_a_usage_error() -> None:
    code, _, err = run(
        "plan", str(CADENCES / "heads-of-platform.yaml"), "--contacts",
        str(CADENCES / "contacts.csv"), "--start", "2026-03-02T00:00Z",
        "--send-at", "2026-03-01T10:00Z",
    )  # fmt: skip
    assert code == 2
    assert "--send-at 2026-03-01 10:00Z is before the launch (--start 2026-03-02 00:00Z)" in err


@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30))
def test_a_markdown_code_cell_shows_its_text_exactly(text: str) -> None:
    from cadence_engine.engine.formats.plan_markdown import code_cell

    shown = code_cell(text)
    fence = len(shown) - len(shown.lstrip("`"))
    assert shown.endswith("`" * fence) and "\n" not in shown
    inner = shown[fence:-fence]
    if inner.startswith(" ") and inner.endswith(" ") and inner.strip(" "):
        inner = inner[1:-1]  # CommonMark strips one space of padding on each side
    # No run of backticks inside is as long as the fence, so the span cannot end early;
    # and the text is the cell's, pipes escaped for the table, newlines as spaces.
    assert all(len(r) < fence for r in re.findall(r"`+", inner))
    assert inner.replace("\\|", "|") == text.replace("\n", " ")


def test_markdown_shows_an_address_with_backticks_and_ampersands_as_written(
    tmp_path: Path,
) -> None:
    contacts = tmp_path / "c.csv"
    contacts.write_text('email\n"a`b&c|d@x.example"\n', encoding="utf-8")
    args = ["plan", str(CADENCES / "event-follow-up.yaml"), "--contacts", str(contacts)]
    code, out, _ = run(*args, *START, "-f", "markdown")
    assert code == 0, out
    assert "| ``a`b&c\\|d@x.example`` |" in out
