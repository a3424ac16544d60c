"""Acceptance checks written from SPEC.md alone: one test per testable SPEC statement.

Every test drives the `cadence` CLI (click's CliRunner) on real YAML/CSV files in a temp
dir, with the command names, flags, keys and formats SPEC names, the way an outsider who
has read only SPEC.md and the README would. Instants are computed by hand in the
docstrings' terms (2026-03-06 is a Friday).
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence

# --------------------------------------------------------------------------- helpers

SPEC_EXAMPLE = """\
# yaml-language-server: $schema=../schemas/cadence.schema.json
cadence: 1
name: Outbound — heads of platform
description: Five touches over two weeks.
sender: {name: Dana Reyes, email: dana@acme.example}
settings:
  skip_weekends: true          # days count Mon–Fri only (a 5-day week); false: calendar days
  holidays: [2026-12-25, 2027-01-01]   # never a campaign day
  timezone: contact            # 'contact' (contact's zone, else default_timezone) or an IANA zone
  default_timezone: America/New_York
  send_window: {start: "08:00", end: "18:00"}   # automatic emails only go out inside it
  daily_limit: 200             # automatic emails per sender per day; the rest move on
  on_reply: {end: true, mark_success: true}
  remove_on_bounce: true
templates:
  intro:
    subject: "{{ contact.company }} and on-call load"
    body: |
      Hi {{ contact.first_name | default("there") }}, ...
  bump:
    subject: "Following up, {{ contact.first_name | default('there') }}"
    body: |
      Hi {{ contact.first_name | default("there") }}, just bumping this.
  bump2:
    subject: "One more thought for {{ contact.company }}"
    body: |
      Hi {{ contact.first_name | default("there") }}, one more thought.
  breakup:
    subject: "Closing the loop"
    body: |
      Hi {{ contact.first_name | default("there") }}, closing the loop.
steps:
  - {id: intro,  day: 1, email: {template: intro, send: choose_at_launch}}
  - {id: call-1, day: 2, call: {notes: "Ask about {{ contact.company }}'s rotation"}}
  - {id: bump,   day: 3, email: {template: bump, send: same_time_as_previous}}
  - {id: bump-2, day: 4, email: {template: bump2, send: {at: "14:00"}, follow_up: true}}
  - {id: li,     day: 5, inmail: {notes: "Connect, mention the intro"}}
  - {id: last,   day: 8, email: {template: breakup, send: task}}
  - {id: card,   day: 8, custom: {title: "Send a handwritten card"}}
"""

CONTACTS_CSV = """\
email,first_name,last_name,company,timezone
ava@northwind.example,Ava,Nakamura,Northwind,America/New_York
bo@globex.example,Bo,Li,Globex,Europe/Amsterdam
cy@initech.example,Cy,,Initech,
"""

TEMPLATES = """\
templates:
  a:
    subject: "Hello {{ contact.first_name | default('there') }}"
    body: |
      Hi {{ contact.first_name | default("there") }},
      first note.
  b:
    subject: "Second"
    body: |
      Second note.
  fu:
    body: |
      Following up.
"""


def cadence_text(steps: str, settings: str = "", extra: str = "") -> str:
    """A small cadence: `steps` and `settings` are YAML lines (settings indented by 2)."""
    head = "cadence: 1\nname: Test\nsender: {name: Dana Reyes, email: dana@acme.example}\n"
    if extra:
        head += extra
    if settings:
        head += "settings:\n" + settings
    return head + TEMPLATES + "steps:\n" + steps


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def run(*args: str | Path, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cadence, [str(a) for a in args], env=dict(env or {}))
    return result.exit_code, result.stdout, result.stderr


def findings(path: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    code, out, err = run("validate", "-f", "json", *extra, path)
    assert out, err
    return code, list(json.loads(out)["findings"])


def rules(path: Path) -> set[str]:
    return {f["rule"] for f in findings(path)[1]}


def plan_rows(
    cadence_path: Path, contacts: Path, *args: str, env: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    code, out, err = run("plan", cadence_path, "--contacts", contacts, *args, "-f", "json", env=env)
    assert code == 0, err
    return list(json.loads(out)["rows"])


def due(rows: Sequence[dict[str, Any]], step: str, contact: str | None = None) -> str:
    for row in rows:
        if row["step"] == step and (contact is None or row["contact"] == contact):
            return str(row["due_utc"])
    raise AssertionError(f"no row for {step} {contact}")


def row(rows: Sequence[dict[str, Any]], step: str, contact: str | None = None) -> dict[str, Any]:
    return next(
        r for r in rows if r["step"] == step and (contact is None or r["contact"] == contact)
    )


ONE = "email,first_name,company\nava@northwind.example,Ava,Northwind\n"


@pytest.fixture
def spec_files(tmp_path: Path) -> tuple[Path, Path]:
    return write(tmp_path, "outbound.yaml", SPEC_EXAMPLE), write(
        tmp_path, "contacts.csv", CONTACTS_CSV
    )


@pytest.fixture
def one(tmp_path: Path) -> Path:
    return write(tmp_path, "one.csv", ONE)


def utc_cadence(tmp: Path, steps: str, settings: str = "", name: str = "c.yaml") -> Path:
    """A cadence in the fixed zone UTC on calendar days, plus `settings`."""
    return write(
        tmp, name, cadence_text(steps, "  timezone: UTC\n  skip_weekends: false\n" + settings)
    )


# --------------------------------------------------------------------------- §4 the file


def test_s4_example_file_validates_verbatim(spec_files: tuple[Path, Path]) -> None:
    """§4: "Every key and value shown here is part of the contract and spelled as shown"."""
    code, found = findings(spec_files[0])
    assert code == 0 and found == []


def test_s4_example_file_plans_every_step_with_its_action(spec_files: tuple[Path, Path]) -> None:
    """§2: "Call, InMail and custom steps always become tasks … An email step is sent
    automatically or, with the task option, becomes an email task." """
    rows = plan_rows(*spec_files, "--start", "2026-03-06T07:00", "--send-at", "09:30")
    ava = [r for r in rows if r["contact"] == "ava@northwind.example"]
    assert [(r["step"], r["action"]) for r in ava] == [
        ("intro", "send email"),
        ("call-1", "call task"),
        ("bump", "send email"),
        ("bump-2", "send email"),
        ("li", "inmail task"),
        ("last", "email task"),
        ("card", "custom task"),
    ]
    # Fri 6 = day 1, Mon 9 = 2, Tue 10 = 3, Wed 11 = 4, Thu 12 = 5, Tue 17 = 8 (Mon–Fri).
    assert [r["due_local"][:10] for r in ava] == [
        "2026-03-06",
        "2026-03-09",
        "2026-03-10",
        "2026-03-11",
        "2026-03-12",
        "2026-03-17",
        "2026-03-17",
    ]
    assert due(ava, "intro") == "2026-03-06T14:30:00Z"  # 09:30 EST
    assert due(ava, "bump") == "2026-03-10T13:30:00Z"  # 09:30 EDT (DST from Mar 8)
    assert due(ava, "bump-2") == "2026-03-11T18:00:00Z"  # 14:00 EDT


def test_s4_task_steps_take_notes_title_and_at(tmp_path: Path, one: Path) -> None:
    """§4: "Call and InMail steps take optional `notes`; custom steps take a required
    `title` and optional `notes`; any task step may take an `at` time of day." """
    steps = (
        "  - {id: a, day: 1, call: {}}\n"
        "  - {id: b, day: 2, inmail: {notes: 'hi', at: '10:15'}}\n"
        "  - {id: c, day: 3, custom: {title: 'Card', notes: 'n', at: '11:45'}}\n"
        "  - {id: d, day: 4, email: {template: b, send: task, at: '12:30'}}\n"
        "  - {id: e, day: 5, call: {notes: 'x', at: '16:00'}}\n"
    )
    path = utc_cadence(tmp_path, steps)
    assert findings(path) == (0, [])
    rows = plan_rows(path, one, "--start", "2026-03-06T07:00Z")
    assert due(rows, "b") == "2026-03-07T10:15:00Z"
    assert due(rows, "c") == "2026-03-08T11:45:00Z"
    assert due(rows, "d") == "2026-03-09T12:30:00Z"
    assert due(rows, "e") == "2026-03-10T16:00:00Z"
    missing = utc_cadence(tmp_path, "  - {id: c, day: 1, custom: {notes: 'n'}}\n", name="m.yaml")
    code, found = findings(missing)
    assert code == 1 and any(f["rule"] == "schema/required-key" for f in found)


def test_s4_first_step_on_day_1(tmp_path: Path) -> None:
    """§4: "the first step is on day 1"."""
    path = utc_cadence(tmp_path, "  - {id: a, day: 2, email: {template: a, send: task}}\n")
    assert "day/first-step" in rules(path)


def test_s4_days_are_integers_at_least_1(tmp_path: Path) -> None:
    """§4: "days are integers ≥ 1"."""
    for i, bad in enumerate(["0", "'3'", "2.5", "-1"]):
        steps = (
            "  - {id: a, day: 1, email: {template: a, send: task}}\n"
            f"  - {{id: b, day: {bad}, call: {{}}}}\n"
        )
        path = utc_cadence(tmp_path, steps, name=f"d{i}.yaml")
        code, found = findings(path)
        assert code == 1, bad
        assert found and all(f["path"].startswith("/steps/1") for f in found), found


def test_s4_days_never_decrease(tmp_path: Path) -> None:
    """§4: "days … never decrease through the list"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: task}}\n"
        "  - {id: b, day: 3, call: {}}\n"
        "  - {id: c, day: 2, call: {}}\n"
    )
    code, found = findings(utc_cadence(tmp_path, steps))
    assert code == 1 and [f["rule"] for f in found] == ["day/order"]
    assert found[0]["path"].startswith("/steps/2")


def test_s4_step_ids_unique_slugs(tmp_path: Path) -> None:
    """§4: "step ids are unique slugs"."""
    dup = "  - {id: a, day: 1, email: {template: a, send: task}}\n  - {id: a, day: 2, call: {}}\n"
    assert "step-id/unique" in rules(utc_cadence(tmp_path, dup, name="dup.yaml"))
    slug = "  - {id: Bad_Id, day: 1, email: {template: a, send: task}}\n"
    assert "step-id/slug" in rules(utc_cadence(tmp_path, slug, name="slug.yaml"))


def test_s4_templates_referenced_exist(tmp_path: Path) -> None:
    """§4: "templates referenced exist"."""
    path = utc_cadence(tmp_path, "  - {id: a, day: 1, email: {template: nope, send: task}}\n")
    assert "template/unknown" in rules(path)


def test_s4_unknown_keys_are_errors_with_did_you_mean(tmp_path: Path) -> None:
    """§4: "unknown keys are errors (with a "did you mean" suggestion)"."""
    text = cadence_text(
        "  - {id: a, day: 1, email: {template: a, send: task}}\n",
        "  skip_weekend: true\n",
    )
    code, found = findings(write(tmp_path, "k.yaml", text))
    assert code == 1
    (finding,) = found
    assert finding["rule"] == "schema/unknown-key"
    assert "did you mean" in finding["message"] and "skip_weekends" in finding["message"]
    assert finding["line"] == 5  # the `skip_weekend` key itself


def test_s4_times_are_hhmm_24_hour(tmp_path: Path) -> None:
    """§4: "times are `HH:MM` 24-hour"."""
    for i, bad in enumerate(["9:00", "24:00", "12:60", "2pm", "12:00:00"]):
        steps = f"  - {{id: a, day: 1, email: {{template: a, send: {{at: '{bad}'}}}}}}\n"
        assert "time/hhmm" in rules(utc_cadence(tmp_path, steps, name=f"t{i}.yaml")), bad
    ok = "  - {id: a, day: 1, email: {template: a, send: {at: '23:59'}}}\n"
    assert findings(utc_cadence(tmp_path, ok, name="ok.yaml")) == (0, [])


def test_s4_time_zones_are_iana(tmp_path: Path) -> None:
    """§4: "time zones are IANA names"."""
    steps = "  - {id: a, day: 1, email: {template: a, send: task}}\n"
    for i, key in enumerate(["timezone", "default_timezone"]):
        path = write(tmp_path, f"z{i}.yaml", cadence_text(steps, f"  {key}: Mars/Olympus\n"))
        assert "timezone/iana" in rules(path)
    good = write(tmp_path, "g.yaml", cadence_text(steps, "  timezone: Asia/Kolkata\n"))
    assert findings(good) == (0, [])


def test_s4_holidays_are_dates(tmp_path: Path) -> None:
    """§4: "holidays are dates"."""
    steps = "  - {id: a, day: 1, email: {template: a, send: task}}\n"
    path = write(tmp_path, "h.yaml", cadence_text(steps, "  holidays: [2026-02-30]\n"))
    assert "date/format" in rules(path)
    path = write(tmp_path, "h2.yaml", cadence_text(steps, "  holidays: [christmas]\n"))
    assert findings(path)[0] == 1


def test_s4_send_window_start_before_end(tmp_path: Path) -> None:
    """§4: "`send_window.start < end`"."""
    steps = "  - {id: a, day: 1, email: {template: a, send: task}}\n"
    for i, window in enumerate(
        ['{start: "18:00", end: "08:00"}', '{start: "09:00", end: "09:00"}']
    ):
        path = write(tmp_path, f"w{i}.yaml", cadence_text(steps, f"  send_window: {window}\n"))
        assert "send-window/order" in rules(path)


def test_s4_template_syntax_error_at_its_line_in_the_yaml(tmp_path: Path) -> None:
    """§4: "templates compile (Jinja syntax errors reported at the template's line in the
    YAML file)"."""
    text = cadence_text("  - {id: a, day: 1, email: {template: x, send: task}}\n").replace(
        "templates:\n",
        "templates:\n  x:\n    subject: ok\n    body: |\n      line one\n      line two\n"
        "      {% if contact.company %}broken\n      line four\n",
    )
    path = write(tmp_path, "syn.yaml", text)
    code, found = findings(path)
    assert code == 1
    (finding,) = [f for f in found if f["rule"] == "template/syntax"]
    lines = text.splitlines()
    # The unclosed `if` is reported on a line of the block (the `{% if` line or the end).
    assert lines[finding["line"] - 1].startswith("      "), finding
    assert finding["line"] >= lines.index("      line one") + 1


def test_s4_template_variables_standard_declared_sender_unsubscribe(tmp_path: Path) -> None:
    """§4: "variables used are `contact.*` fields declared or standard (`email`,
    `first_name`, `last_name`, `company`, `title`, `timezone`, `phone`, `linkedin_url`),
    `sender.*`, or `unsubscribe_url`"."""
    body = " ".join(
        "{{ contact." + f + " }}"
        for f in (
            "email",
            "first_name",
            "last_name",
            "company",
            "title",
            "timezone",
            "phone",
            "linkedin_url",
            "team_size",
        )
    )
    body += " {{ sender.name }} {{ sender.email }} {{ unsubscribe_url }}"
    text = cadence_text(
        "  - {id: a, day: 1, email: {template: x, send: task}}\n",
        extra="contact_fields: [team_size]\n",
    )
    text = text.replace("templates:\n", f"templates:\n  x:\n    subject: s\n    body: '{body}'\n")
    assert findings(write(tmp_path, "ok.yaml", text)) == (0, [])
    bad = text.replace("contact.company", "contact.compny").replace(
        "contact_fields: [team_size]\n", ""
    )
    code, found = findings(write(tmp_path, "bad.yaml", bad))
    assert code == 1
    messages = {f["message"] for f in found if f["rule"] == "template/unknown-variable"}
    assert any("compny" in m and "company" in m for m in messages), messages
    assert any("team_size" in m for m in messages), messages
    other = text.replace("{{ unsubscribe_url }}", "{{ secret }}")
    assert "template/unknown-variable" in rules(write(tmp_path, "o.yaml", other))


def test_s4_follow_up_may_omit_subject_other_emails_must_not(tmp_path: Path) -> None:
    """§4: "a follow-up email may omit its subject (it inherits `Re: <previous subject>`);
    any other email must have one." """
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
        "  - {id: b, day: 2, email: {template: fu, send: same_time_as_previous, follow_up: true}}\n"
    )
    assert findings(utc_cadence(tmp_path, steps)) == (0, [])
    bad = "  - {id: a, day: 1, email: {template: fu, send: {at: '10:00'}}}\n"
    assert "template/subject-required" in rules(utc_cadence(tmp_path, bad, name="b.yaml"))


def test_s4_schema_is_draft_2020_12_in_schemas_and_printed(tmp_path: Path) -> None:
    """§4: "The JSON Schema (draft 2020-12) in `schemas/` is the single rulebook";
    §6: "`cadence schema` # print the JSON Schema"."""
    code, out, _ = run("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    shipped = Path(__file__).resolve().parent.parent / "schemas" / "cadence.schema.json"
    assert json.loads(shipped.read_text(encoding="utf-8")) == schema


def test_s4_schema_checks_example_with_plain_jsonschema(spec_files: tuple[Path, Path]) -> None:
    """§4: "editors check what they can": a standard 2020-12 validator accepts the example
    and rejects an unknown key."""
    from jsonschema import Draft202012Validator
    from ruamel.yaml import YAML

    schema = json.loads(run("schema")[1])
    data = json.loads(json.dumps(YAML(typ="safe").load(SPEC_EXAMPLE), default=str))
    validator = Draft202012Validator(schema)
    assert list(validator.iter_errors(data)) == []
    data["settings"]["skip_weekend"] = True
    assert list(validator.iter_errors(data))


# --------------------------------------------------------------------------- §3 R1–R6


def test_r1_first_step_offers_exactly_three_options(tmp_path: Path) -> None:
    """R1: first step offers exactly `choose_at_launch`, `at` and `task`."""
    for i, send in enumerate(["choose_at_launch", "{at: '10:00'}", "task"]):
        steps = f"  - {{id: a, day: 1, email: {{template: a, send: {send}}}}}\n"
        assert findings(utc_cadence(tmp_path, steps, name=f"ok{i}.yaml")) == (0, []), send
    steps = "  - {id: a, day: 1, email: {template: a, send: same_time_as_previous}}\n"
    code, found = findings(utc_cadence(tmp_path, steps, name="bad.yaml"))
    assert code == 1 and [f["rule"] for f in found] == ["send-option/first-step"]


def test_r1_choose_at_launch_without_send_time_is_a_clear_error(
    spec_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R1: "the launcher must give the send time when launching … Launching without one is
    a clear error." """
    monkeypatch.chdir(tmp_path)
    code, _, err = run("launch", spec_files[0], "--contacts", spec_files[1])
    assert code == 2
    assert "--send-at" in err and "Traceback" not in err
    code, _, err = run("plan", spec_files[0], "--contacts", spec_files[1])
    assert code == 2 and "--send-at" in err
    code, out, _ = run("status", "-f", "json")
    assert json.loads(out)["cadences"] == []  # nobody enrolled


def test_r1_at_time_is_scheduled_at_launch(tmp_path: Path, one: Path) -> None:
    """R1: "`at` a time of day — scheduled for that time when the campaign is launched"."""
    path = utc_cadence(tmp_path, "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n")
    assert due(plan_rows(path, one, "--start", "2026-03-06T07:00Z"), "a") == "2026-03-06T10:00:00Z"


def test_r1_launcher_may_override_at_with_send_at(tmp_path: Path, one: Path) -> None:
    """R1: "The launcher may always override it with a new send date/time at launch." """
    path = utc_cadence(tmp_path, "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n")
    rows = plan_rows(path, one, "--start", "2026-03-06T07:00Z", "--send-at", "15:45")
    assert due(rows, "a") == "2026-03-06T15:45:00Z"
    rows = plan_rows(path, one, "--start", "2026-03-06T07:00Z", "--send-at", "2026-03-06T16:20Z")
    assert due(rows, "a") == "2026-03-06T16:20:00Z"


def test_r1_task_first_step_queues_an_email_task(tmp_path: Path, one: Path) -> None:
    """R1: "`task` — an email task is queued at launch (see R6)"."""
    path = utc_cadence(tmp_path, "  - {id: a, day: 1, email: {template: a, send: task}}\n")
    rows = plan_rows(path, one, "--start", "2026-03-06T07:00Z")
    assert row(rows, "a")["action"] == "email task"
    assert row(rows, "a")["day"] == 1


def test_r2_choose_at_launch_not_on_later_steps(tmp_path: Path) -> None:
    """R2: "`choose_at_launch` is not available" on later steps."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: task}}\n"
        "  - {id: b, day: 2, email: {template: b, send: choose_at_launch}}\n"
    )
    code, found = findings(utc_cadence(tmp_path, steps))
    assert code == 1 and [f["rule"] for f in found] == ["send-option/later-step"]


def test_r2_same_time_as_previous_copies_time_on_its_own_day(tmp_path: Path, one: Path) -> None:
    """R2: "send at the same time of day as the email directly before it, on its own day"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '10:20'}}}\n"
        "  - {id: c, day: 2, call: {at: '08:00'}}\n"
        "  - {id: b, day: 4, email: {template: b, send: same_time_as_previous}}\n"
    )
    rows = plan_rows(utc_cadence(tmp_path, steps), one, "--start", "2026-03-06T07:00Z")
    assert due(rows, "b") == "2026-03-09T10:20:00Z"


def test_r2_same_day_previous_uses_most_recent_earlier_day(tmp_path: Path, one: Path) -> None:
    """R2: "when the previous email is on the same day, the time used is that of the email
    sent on the most recent *earlier* day"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '10:20'}}}\n"
        "  - {id: x, day: 2, email: {template: b, send: {at: '07:10'}}}\n"
        "  - {id: b, day: 2, email: {template: b, send: same_time_as_previous}}\n"
    )
    rows = plan_rows(utc_cadence(tmp_path, steps), one, "--start", "2026-03-06T07:00Z")
    assert due(rows, "b") == "2026-03-07T10:20:00Z"


def test_r2_day_1_without_earlier_email_sends_at_launch_and_warns(
    tmp_path: Path, one: Path
) -> None:
    """R2: "When there is no email on an earlier day (the step is on day 1), the email is
    sent immediately at the start of the campaign (launch time) — allowed, but the
    validator warns that it is not recommended." """
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: task, at: '06:00'}}\n"
        "  - {id: b, day: 1, email: {template: b, send: same_time_as_previous}}\n"
    )
    path = utc_cadence(tmp_path, steps)
    code, found = findings(path)
    assert code == 0
    assert [(f["rule"], f["severity"]) for f in found] == [
        ("send-option/same-time-day-1", "warning")
    ]
    assert "not recommended" in found[0]["message"]
    assert findings(path, "--strict")[0] == 1
    rows = plan_rows(path, one, "--start", "2026-03-06T07:00Z")
    assert due(rows, "b") == "2026-03-06T07:00:00Z"


def test_r3_follow_up_needs_an_email_directly_before(tmp_path: Path) -> None:
    """R3: "Only valid when the step directly before it is an email step (not a call,
    InMail or custom step), so never on the first step." """
    for i, kind in enumerate(["call: {}", "inmail: {}", "custom: {title: t}"]):
        steps = (
            "  - {id: a, day: 1, email: {template: a, send: task}}\n"
            f"  - {{id: c, day: 2, {kind}}}\n"
            "  - {id: b, day: 3, email: {template: fu, send: {at: '10:00'}, follow_up: true}}\n"
        )
        code, found = findings(utc_cadence(tmp_path, steps, name=f"k{i}.yaml"))
        assert code == 1 and [f["rule"] for f in found] == ["follow-up/previous-not-email"]
    first = "  - {id: a, day: 1, email: {template: a, send: task, follow_up: true}}\n"
    assert "follow-up/first-step" in rules(utc_cadence(tmp_path, first, name="f.yaml"))


def test_r3_follow_up_replies_in_thread_and_quotes_template(tmp_path: Path, one: Path) -> None:
    """R3: "The previous email is appended (quoted) below the new one, and the follow-up is
    sent as a reply in the same thread (`Re: <previous subject>`…)"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
        "  - {id: b, day: 2, email: {template: fu, send: same_time_as_previous, follow_up: true}}\n"
    )
    path = utc_cadence(tmp_path, steps)
    rows = plan_rows(path, one, "--start", "2026-03-06T07:00Z")
    assert row(rows, "b")["thread"] == "a"
    code, out, err = run(
        "preview", path, "--contact", "ava@northwind.example", "--contacts", one,
        "--start", "2026-03-06T07:00Z",
    )  # fmt: skip
    assert code == 0, err
    part = out.split("· b ·", 1)[1]
    assert "Subject: Re: Hello Ava" in part
    assert "> Hi Ava," in part and "> first note." in part


def test_r3_follow_up_with_its_own_subject_still_replies_in_thread(
    spec_files: tuple[Path, Path],
) -> None:
    """R3: "the follow-up is sent as a reply in the same thread (`Re: <previous subject>`)"
    — also for the SPEC example's bump2, defined "the same way" (with a subject)."""
    code, out, err = run(
        "preview", spec_files[0], "--contact", "ava@northwind.example", "--contacts",
        spec_files[1], "--start", "2026-03-06T07:00", "--send-at", "09:30",
    )  # fmt: skip
    assert code == 0, err
    part = out.split("· bump-2 ·", 1)[1].split("────", 1)[0]
    assert "Subject: Re: Following up, Ava" in part


def test_r4_same_time_after_email_task_depends_on_its_send(tmp_path: Path, one: Path) -> None:
    """R4: "When the referenced previous email was sent by hand (an email task) …
    `same_time_as_previous` uses the time it was actually sent … The plan shows such a time
    as depending on that email." """
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: task}}\n"
        "  - {id: b, day: 2, email: {template: b, send: same_time_as_previous}}\n"
    )
    rows = plan_rows(utc_cadence(tmp_path, steps), one, "--start", "2026-03-06T07:00Z")
    assert any("a" in dep and "sent" in dep for dep in row(rows, "b")["depends_on"])
    code, out, _ = run(
        "plan", utc_cadence(tmp_path, steps), "--contacts", one, "--start", "2026-03-06T07:00Z"
    )
    assert code == 0 and "send time of a" in out


def test_r5_steps_after_a_task_are_held_in_the_plan(spec_files: tuple[Path, Path]) -> None:
    """R5: "steps after a task are held until the task is done or skipped"."""
    rows = plan_rows(*spec_files, "--start", "2026-03-06T07:00", "--send-at", "09:30")
    ava = [r for r in rows if r["contact"] == "ava@northwind.example"]
    assert row(ava, "intro")["depends_on"] == []
    assert row(ava, "call-1")["depends_on"] == []
    for step in ("bump", "bump-2", "li"):
        assert "task:call-1" in row(ava, step)["depends_on"], step
    assert "task:li" in row(ava, "last")["depends_on"]
    assert "task:last" in row(ava, "card")["depends_on"]


def test_r6_email_task_preview_has_compose_view_and_links(tmp_path: Path) -> None:
    """R6: "An email task … gives a compose view with the contact's address, the rendered
    subject and the rendered template; it also gives links that open a prefilled compose
    window in Gmail, Outlook on the web and the system mail client (`mailto:`)." """
    text = cadence_text(
        "  - {id: a, day: 1, email: {template: x, send: task}}\n",
        "  timezone: UTC\n",
    ).replace(
        "templates:\n",
        "templates:\n  x:\n    subject: 'Q&A #1 + more'\n"
        "    body: 'Hé {{ contact.first_name }}\n\n      bye'\n",
    )
    path = write(tmp_path, "t.yaml", text)
    contacts = write(tmp_path, "c.csv", "email,first_name\nzoë+x@ex.example,Zoë\n")
    code, out, err = run("preview", path, "--contact", "zoë+x@ex.example", "--contacts", contacts)
    assert code == 0, err
    assert "To: Zoë <zoë+x@ex.example>" in out
    assert "Subject: Q&A #1 + more" in out
    gmail = re.search(r"https://mail\.google\.com/\S+", out)
    outlook = re.search(r"https://outlook\.office\.com/\S+", out)
    mailto = re.search(r"mailto:\S+", out)
    assert gmail and outlook and mailto
    from urllib.parse import parse_qs, unquote, urlsplit

    query = parse_qs(urlsplit(gmail.group(0)).query)
    assert query["su"] == ["Q&A #1 + more"]
    assert query["body"][0].startswith("Hé Zoë")
    mq = parse_qs(urlsplit(mailto.group(0)).query)
    assert mq["subject"] == ["Q&A #1 + more"]
    assert unquote(urlsplit(mailto.group(0)).path) == "zoë+x@ex.example"


# --------------------------------------------------------------------------- §2 concepts


def test_s2_days_are_absolute_not_relative(tmp_path: Path, one: Path) -> None:
    """§2: "`day: 3` means the third day of the campaign, *not* three days after the
    previous step"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
        "  - {id: b, day: 2, email: {template: b, send: {at: '10:00'}}}\n"
        "  - {id: c, day: 3, email: {template: b, send: {at: '10:00'}}}\n"
    )
    rows = plan_rows(utc_cadence(tmp_path, steps), one, "--start", "2026-03-06T07:00Z")
    assert [r["due_utc"][:10] for r in rows] == ["2026-03-06", "2026-03-07", "2026-03-08"]


def test_s2_same_day_steps_keep_file_order(tmp_path: Path, one: Path) -> None:
    """§2: "Several steps may share a day; their order in the file is their order of
    execution." """
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
        "  - {id: c, day: 2, call: {at: '09:00'}}\n"
        "  - {id: b, day: 2, custom: {title: t, at: '09:30'}}\n"
    )
    rows = plan_rows(utc_cadence(tmp_path, steps), one, "--start", "2026-03-06T07:00Z")
    assert [r["step"] for r in rows] == ["a", "c", "b"]
    assert due(rows, "c") <= due(rows, "b")


def test_s2_plan_is_deterministic(spec_files: tuple[Path, Path]) -> None:
    """§2: "Plan: the compiled, deterministic list of (contact, step, due time, action)"."""
    outs = []
    for fmt in ("table", "json", "jsonl", "csv", "markdown"):
        args: list[str | Path] = [
            "plan", spec_files[0], "--contacts", spec_files[1], "--start", "2026-03-06T07:00"
        ]  # fmt: skip
        first = run(*args, "--send-at", "09:30", "-f", fmt)
        second = run(*args, "--send-at", "09:30", "-f", fmt)
        assert first[0] == 0 and first == second, fmt
        outs.append(first[1])
    rows = list(csv.DictReader(io.StringIO(outs[3])))
    assert len(rows) == 21 and "ava@northwind.example" in outs[4]


# --------------------------------------------------------------------------- §5 scheduling


def test_s5_day_1_is_first_business_day_on_or_after_launch(tmp_path: Path, one: Path) -> None:
    """§5: "with `skip_weekends` … it is the first business day on or after launch, and day N
    is the Nth business day"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
        "  - {id: b, day: 2, email: {template: b, send: {at: '10:00'}}}\n"
        "  - {id: c, day: 6, email: {template: b, send: {at: '10:00'}}}\n"
    )
    path = write(
        tmp_path, "c.yaml", cadence_text(steps, "  timezone: UTC\n  skip_weekends: true\n")
    )
    rows = plan_rows(path, one, "--start", "2026-03-07T07:00Z")  # a Saturday
    assert [r["due_utc"] for r in rows] == [
        "2026-03-09T10:00:00Z",  # Monday
        "2026-03-10T10:00:00Z",
        "2026-03-16T10:00:00Z",  # 6th business day
    ]


def test_s5_day_1_is_launch_date_in_the_scheduling_zone(tmp_path: Path) -> None:
    """§5: "Day 1 is the launch date in the scheduling zone"."""
    steps = "  - {id: a, day: 1, email: {template: a, send: {at: '23:30'}}}\n"
    path = write(tmp_path, "c.yaml", cadence_text(steps, "  skip_weekends: false\n"))
    contacts = write(
        tmp_path,
        "z.csv",
        "email,timezone\ntok@x.example,Asia/Tokyo\nla@x.example,America/Los_Angeles\n",
    )
    rows = plan_rows(path, contacts, "--start", "2026-03-06T20:00Z")
    # 20:00Z is Sat 05:00 in Tokyo, Fri 12:00 in Los Angeles.
    assert due(rows, "a", "tok@x.example") == "2026-03-07T14:30:00Z"
    assert due(rows, "a", "la@x.example") == "2026-03-07T07:30:00Z"


def test_s5_holidays_are_never_campaign_days(tmp_path: Path, one: Path) -> None:
    """§4/§5: holidays are "never a campaign day"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
        "  - {id: b, day: 2, email: {template: b, send: {at: '10:00'}}}\n"
    )
    settings = "  timezone: UTC\n  holidays: [2026-03-09, 2026-03-10]\n"
    rows = plan_rows(
        write(tmp_path, "c.yaml", cadence_text(steps, settings)),
        one,
        "--start",
        "2026-03-06T07:00Z",
    )
    assert due(rows, "b") == "2026-03-11T10:00:00Z"
    settings = "  timezone: UTC\n  skip_weekends: false\n  holidays: [2026-03-06]\n"
    rows = plan_rows(
        write(tmp_path, "d.yaml", cadence_text(steps, settings)),
        one,
        "--start",
        "2026-03-06T07:00Z",
    )
    assert [r["due_utc"] for r in rows] == ["2026-03-07T10:00:00Z", "2026-03-08T10:00:00Z"]


def test_s5_skip_weekends_false_counts_calendar_days(tmp_path: Path, one: Path) -> None:
    """§4: "false: calendar days"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
        "  - {id: b, day: 2, email: {template: b, send: {at: '10:00'}}}\n"
    )
    rows = plan_rows(utc_cadence(tmp_path, steps), one, "--start", "2026-03-06T07:00Z")
    assert due(rows, "b") == "2026-03-07T10:00:00Z"  # a Saturday


def test_s5_scheduling_zone_per_contact_default_or_fixed(tmp_path: Path) -> None:
    """§5: "the contact's own IANA zone when `timezone: contact` and the contact has one,
    else `default_timezone`; or the fixed zone given"."""
    steps = "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
    contacts = write(
        tmp_path, "z.csv", "email,timezone\nams@x.example,Europe/Amsterdam\nnone@x.example,\n"
    )
    settings = "  timezone: contact\n  default_timezone: America/Chicago\n"
    rows = plan_rows(
        write(tmp_path, "c.yaml", cadence_text(steps, settings)),
        contacts,
        "--start",
        "2026-03-06T06:00Z",
    )
    assert due(rows, "a", "ams@x.example") == "2026-03-06T09:00:00Z"  # 10:00 CET
    assert due(rows, "a", "none@x.example") == "2026-03-06T16:00:00Z"  # 10:00 CST
    fixed = write(tmp_path, "f.yaml", cadence_text(steps, "  timezone: Asia/Tokyo\n"))
    rows = plan_rows(fixed, contacts, "--start", "2026-03-05T00:30Z")
    assert {r["due_utc"] for r in rows} == {"2026-03-05T01:00:00Z"}  # 10:00 JST


def test_s5_default_timezone_absent_is_utc(tmp_path: Path) -> None:
    """README: `default_timezone` defaults to UTC for contacts without a zone."""
    steps = "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
    contacts = write(tmp_path, "z.csv", "email\nnone@x.example\n")
    rows = plan_rows(
        write(tmp_path, "c.yaml", cadence_text(steps)), contacts, "--start", "2026-03-06T06:00Z"
    )
    assert due(rows, "a") == "2026-03-06T10:00:00Z"


def test_s5_spring_forward_gap_moves_forward(tmp_path: Path, one: Path) -> None:
    """§5: "a time that does not exist (spring forward) moves forward by the gap"."""
    steps = "  - {id: a, day: 1, email: {template: a, send: {at: '02:30'}}}\n"
    settings = "  timezone: America/New_York\n  skip_weekends: false\n"
    path = write(tmp_path, "c.yaml", cadence_text(steps, settings))
    rows = plan_rows(path, one, "--start", "2026-03-08T00:00-05:00")
    assert due(rows, "a") == "2026-03-08T07:30:00Z"  # 03:30 EDT
    assert row(rows, "a")["due_local"] == "2026-03-08T03:30:00-04:00"


def test_s5_fall_back_takes_first_occurrence(tmp_path: Path, one: Path) -> None:
    """§5: "an ambiguous one (fall back) takes the first occurrence. Instants are stored in
    UTC." """
    steps = "  - {id: a, day: 1, email: {template: a, send: {at: '01:30'}}}\n"
    settings = "  timezone: America/New_York\n  skip_weekends: false\n"
    path = write(tmp_path, "c.yaml", cadence_text(steps, settings))
    rows = plan_rows(path, one, "--start", "2026-11-01T00:00-04:00")
    assert due(rows, "a") == "2026-11-01T05:30:00Z"  # 01:30 EDT, the first one


def test_s5_outside_send_window_moves_to_next_opening(tmp_path: Path, one: Path) -> None:
    """§5: "An automatic email whose time falls outside `send_window` moves to the next
    opening"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '07:00'}}}\n"
        "  - {id: b, day: 2, email: {template: b, send: {at: '19:00'}}}\n"
        "  - {id: c, day: 4, email: {template: b, send: {at: '12:00'}}}\n"
    )
    settings = '  timezone: UTC\n  send_window: {start: "08:00", end: "18:00"}\n'
    rows = plan_rows(
        write(tmp_path, "c.yaml", cadence_text(steps, settings)),
        one,
        "--start",
        "2026-03-05T06:00Z",
    )
    assert due(rows, "a") == "2026-03-05T08:00:00Z"  # Thu, later that day
    assert due(rows, "b") == "2026-03-09T08:00:00Z"  # Fri 19:00 -> Mon opening
    assert row(rows, "b")["moved"]


def test_s5_daily_limit_moves_to_next_day_with_room(tmp_path: Path) -> None:
    """§5: "one beyond `daily_limit` for its sender moves to the next day that has room"."""
    steps = "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
    contacts = write(tmp_path, "z.csv", "email\na@x.example\nb@x.example\nc@x.example\n")
    settings = "  timezone: UTC\n  daily_limit: 2\n"
    rows = plan_rows(
        write(tmp_path, "c.yaml", cadence_text(steps, settings)),
        contacts,
        "--start",
        "2026-03-06T06:00Z",
    )
    assert [r["due_utc"] for r in rows] == [
        "2026-03-06T10:00:00Z",
        "2026-03-06T10:00:00Z",
        "2026-03-09T10:00:00Z",  # Friday full: next campaign day (Monday)
    ]


def test_s5_same_day_earlier_time_goes_right_after_and_warns(tmp_path: Path, one: Path) -> None:
    """§5: "a step whose time is earlier than the step listed before it on the same day goes
    out right after that step instead, and `validate` warns about the pair"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '12:00'}}}\n"
        "  - {id: b, day: 1, email: {template: b, send: {at: '11:00'}}}\n"
    )
    path = utc_cadence(tmp_path, steps)
    code, found = findings(path)
    assert code == 0 and [f["rule"] for f in found] == ["step-order/same-day"]
    assert "'a'" in found[0]["message"] and "'b'" in found[0]["message"]
    rows = plan_rows(path, one, "--start", "2026-03-06T06:00Z")
    assert "2026-03-06T12:00:00Z" <= due(rows, "b") < "2026-03-06T12:05:00Z"


def test_s5_defaults_when_settings_absent(tmp_path: Path) -> None:
    """§5: "Defaults when a setting is absent: `skip_weekends: true` … `timezone: contact`,
    no send window, no daily limit." """
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '03:00'}}}\n"
        "  - {id: b, day: 2, email: {template: b, send: {at: '23:00'}}}\n"
    )
    lines = "email,timezone\n" + "".join(f"p{i}@x.example,Europe/Amsterdam\n" for i in range(300))
    contacts = write(tmp_path, "z.csv", lines)
    rows = plan_rows(
        write(tmp_path, "c.yaml", cadence_text(steps)), contacts, "--start", "2026-03-06T00:00Z"
    )
    assert {due(rows, "a", f"p{i}@x.example") for i in range(300)} == {"2026-03-06T02:00:00Z"}
    assert {due(rows, "b", f"p{i}@x.example") for i in range(300)} == {"2026-03-09T22:00:00Z"}


def test_s5_task_due_times(tmp_path: Path, one: Path) -> None:
    """§5: "Email tasks and other tasks are due on their day (at their `at` time if given,
    else at the start of the send window, or 09:00 local without one)"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: task}}\n"
        "  - {id: b, day: 2, call: {}}\n"
        "  - {id: c, day: 3, inmail: {at: '13:15'}}\n"
    )
    rows = plan_rows(utc_cadence(tmp_path, steps), one, "--start", "2026-03-06T06:00Z")
    assert [r["due_utc"] for r in rows] == [
        "2026-03-06T09:00:00Z",
        "2026-03-07T09:00:00Z",
        "2026-03-08T13:15:00Z",
    ]
    window = utc_cadence(
        tmp_path, steps, '  send_window: {start: "07:45", end: "17:00"}\n', "w.yaml"
    )
    rows = plan_rows(window, one, "--start", "2026-03-06T06:00Z")
    assert [r["due_utc"] for r in rows] == [
        "2026-03-06T07:45:00Z",
        "2026-03-07T07:45:00Z",
        "2026-03-08T13:15:00Z",
    ]


# --------------------------------------------------------------------------- §6 commands


def test_s6_when_forms(tmp_path: Path, one: Path) -> None:
    """§6: "`WHEN` is `now`, an ISO 8601 instant with an offset or `Z`, or a local
    date-time without offset read in the cadence's `default_timezone`." """
    steps = "  - {id: a, day: 1, email: {template: a, send: choose_at_launch}}\n"
    settings = "  skip_weekends: false\n  default_timezone: Europe/Amsterdam\n"
    path = write(tmp_path, "c.yaml", cadence_text(steps, settings))
    for send_at, expected in [
        ("2026-03-06T10:00Z", "2026-03-06T10:00:00Z"),
        ("2026-03-06T10:00+02:00", "2026-03-06T08:00:00Z"),
        ("2026-03-06T10:00", "2026-03-06T09:00:00Z"),  # CET
        ("10:00", "2026-03-06T09:00:00Z"),
    ]:
        rows = plan_rows(path, one, "--start", "2026-03-06T05:00Z", "--send-at", send_at)
        assert due(rows, "a") == expected, send_at
    code, _, err = run(
        "plan", path, "--contacts", one, "--start", "now", "--send-at", "now", "-f", "json"
    )
    assert code == 0, err


def test_s6_send_at_hhmm_is_day_1_in_each_contacts_zone(tmp_path: Path) -> None:
    """§6: "`--send-at` also takes `HH:MM`: that time on day 1 in each contact's own
    scheduling zone." """
    steps = "  - {id: a, day: 1, email: {template: a, send: choose_at_launch}}\n"
    contacts = write(
        tmp_path,
        "z.csv",
        "email,timezone\nny@x.example,America/New_York\nams@x.example,Europe/Amsterdam\n",
    )
    path = write(tmp_path, "c.yaml", cadence_text(steps))
    rows = plan_rows(path, contacts, "--start", "2026-03-06T05:00Z", "--send-at", "09:30")
    assert due(rows, "a", "ny@x.example") == "2026-03-06T14:30:00Z"
    assert due(rows, "a", "ams@x.example") == "2026-03-06T08:30:00Z"


def test_s6_passed_day_1_time_goes_at_launch_or_next_opening(tmp_path: Path, one: Path) -> None:
    """§6: "A day-1 time that has already passed when a contact is launched goes out at the
    launch instant (or at the next send-window opening)." """
    steps = "  - {id: a, day: 1, email: {template: a, send: {at: '09:00'}}}\n"
    rows = plan_rows(utc_cadence(tmp_path, steps), one, "--start", "2026-03-06T11:17Z")
    assert due(rows, "a") == "2026-03-06T11:17:00Z"
    window = utc_cadence(
        tmp_path, steps, '  send_window: {start: "08:00", end: "10:00"}\n', "w.yaml"
    )
    rows = plan_rows(window, one, "--start", "2026-03-06T11:17Z")
    assert due(rows, "a") == "2026-03-07T08:00:00Z"


def test_s6_validate_files_folders_globs_and_formats(
    tmp_path: Path, spec_files: tuple[Path, Path]
) -> None:
    """§6: "cadence validate PATH... # files, folders or globs; -f text|json|github|sarif"."""
    bad = write(
        tmp_path,
        "sub_bad.yaml",
        SPEC_EXAMPLE.replace("send: same_time_as_previous", "send: choose_at_launch"),
    )
    folder = tmp_path / "dir"
    folder.mkdir()
    write(folder, "one.yaml", SPEC_EXAMPLE)
    assert run("validate", folder)[0] == 0
    assert run("validate", str(tmp_path / "dir" / "*.yaml"))[0] == 0
    code, out, _ = run("validate", "-f", "text", spec_files[0], bad, env={"NO_COLOR": "1"})
    assert code == 1
    line = (
        SPEC_EXAMPLE.splitlines().index(
            "  - {id: bump,   day: 3, email: {template: bump, send: same_time_as_previous}}"
        )
        + 1
    )
    assert re.search(rf"sub_bad\.yaml:{line}:\d+: .*\[send-option/later-step\]", out), out
    assert "\x1b[" not in out
    code, out, _ = run("validate", "-f", "github", bad)
    assert code == 1 and re.search(rf"::error file=[^,]*sub_bad\.yaml,line={line},col=\d+", out)
    code, out, _ = run("validate", "-f", "sarif", bad)
    sarif = json.loads(out)
    assert code == 1 and sarif["version"] == "2.1.0"
    result = sarif["runs"][0]["results"][0]
    assert result["ruleId"] == "send-option/later-step"
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == line
    code, out, _ = run("validate", "-f", "json", bad)
    assert code == 1 and json.loads(out)["findings"][0]["line"] == line


def test_s6_validate_usage_errors_exit_2(tmp_path: Path) -> None:
    """§6: "Exit codes: 0 clean, 1 findings / failures, 2 usage error"."""
    assert run("validate", tmp_path / "missing.yaml")[0] == 2
    assert run("validate", "-f", "xml", tmp_path)[0] == 2
    assert run("plan")[0] == 2
    assert run("no-such-command")[0] == 2


def test_s6_help_everywhere() -> None:
    """§6: "`--help` everywhere"."""
    commands = [
        [], ["validate"], ["fmt"], ["schema"], ["preview"], ["plan"], ["diff"], ["launch"],
        ["run"], ["tasks"], ["tasks", "list"], ["tasks", "show"], ["tasks", "done"],
        ["tasks", "skip"], ["tasks", "send"], ["event"], ["event", "reply"],
        ["event", "bounce"], ["event", "unsubscribe"], ["status"],
    ]  # fmt: skip
    for command in commands:
        code, out, _ = run(*command, "--help")
        assert code == 0 and "Usage" in out, command


def test_s6_fmt_check_and_comments_kept(tmp_path: Path, spec_files: tuple[Path, Path]) -> None:
    """§6: "cadence fmt [--check] PATH... # canonical formatting, comments kept"."""
    messy = SPEC_EXAMPLE.replace(
        "cadence: 1\nname: Outbound — heads of platform\n",
        "name: Outbound — heads of platform\ncadence: 1\n",
    )
    path = write(tmp_path, "messy.yaml", messy)
    code, out, err = run("fmt", "--check", path)
    assert code == 1 and "messy.yaml" in out + err
    assert path.read_text(encoding="utf-8") == messy
    assert run("fmt", path)[0] == 0
    formatted = path.read_text(encoding="utf-8")
    assert formatted.index("cadence: 1") < formatted.index("name:")
    assert "# never a campaign day" in formatted and "# yaml-language-server" in formatted
    assert run("fmt", "--check", path)[0] == 0
    assert run("validate", path)[0] == 0


def test_s6_diff_exit_codes_and_markdown(tmp_path: Path) -> None:
    """§6: "cadence diff OLD NEW # what changes for contacts, as text or Markdown for a PR"."""
    old = write(tmp_path, "old.yaml", SPEC_EXAMPLE)
    same = write(tmp_path, "same.yaml", SPEC_EXAMPLE.replace("# never a campaign day", "# note"))
    new = write(
        tmp_path, "new.yaml", SPEC_EXAMPLE.replace("id: li,     day: 5", "id: li,     day: 6")
    )
    assert run("diff", old, same)[0] == 0
    code, out, _ = run("diff", old, new)
    assert code == 1 and "li" in out
    code, out, _ = run("diff", "-f", "markdown", old, new)
    assert code == 1 and "li" in out and ("#" in out or "|" in out)


def test_s6_contact_list_formats(tmp_path: Path) -> None:
    """§6: "Contact lists: CSV with a header (also JSON, JSONL, YAML)"."""
    steps = "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
    path = utc_cadence(tmp_path, steps, name="cadence.yml")
    people = [{"email": "a@x.example", "first_name": "A"}, {"email": "b@x.example"}]
    files = [
        write(tmp_path, "c.csv", "email,first_name\na@x.example,A\nb@x.example,\n"),
        write(tmp_path, "c.json", json.dumps(people)),
        write(tmp_path, "c.jsonl", "".join(json.dumps(p) + "\n" for p in people)),
        write(
            tmp_path, "c.yaml", "- {email: a@x.example, first_name: A}\n- {email: b@x.example}\n"
        ),
    ]
    for contacts in files:
        rows = plan_rows(path, contacts, "--start", "2026-03-06T06:00Z")
        assert [r["contact"] for r in rows] == ["a@x.example", "b@x.example"], contacts


def test_s6_email_column_required(tmp_path: Path) -> None:
    """§6: "`email` required"."""
    steps = "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
    path = utc_cadence(tmp_path, steps)
    contacts = write(tmp_path, "c.csv", "name,company\nA,B\n")
    code, _, err = run("plan", path, "--contacts", contacts, "--start", "2026-03-06T06:00Z")
    assert code == 1 and "email" in err and "Traceback" not in err


def test_s6_unknown_columns_become_contact_fields(tmp_path: Path) -> None:
    """§6: "unknown columns become `contact.<column>`"."""
    text = cadence_text(
        "  - {id: a, day: 1, email: {template: x, send: {at: '10:00'}}}\n",
        "  timezone: UTC\n",
        extra="contact_fields: [team_size]\n",
    ).replace(
        "templates:\n",
        "templates:\n  x:\n    subject: 'Team of {{ contact.team_size }}'\n    body: 'hi'\n",
    )
    path = write(tmp_path, "c.yaml", text)
    contacts = write(tmp_path, "c.csv", "email,team_size\na@x.example,42\n")
    code, out, err = run("preview", path, "--contact", "a@x.example", "--contacts", contacts)
    assert code == 0, err
    assert "Subject: Team of 42" in out


def test_s6_bad_rows_reported_with_row_number_and_reason(tmp_path: Path) -> None:
    """§6: "Bad rows are reported with row number and reason"."""
    steps = "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
    path = utc_cadence(tmp_path, steps)
    contacts = write(
        tmp_path, "c.csv", "email,timezone\ngood@x.example,\nnot-an-email,\nz@x.example,Mars/Base\n"
    )
    code, out, err = run("plan", path, "--contacts", contacts, "--start", "2026-03-06T06:00Z")
    assert code == 1 and out == ""
    assert "row 2" in err and "not-an-email" in err
    assert "row 3" in err and "Mars/Base" in err
    code, out, err = run(
        "plan",
        path,
        "--contacts",
        contacts,
        "--start",
        "2026-03-06T06:00Z",
        "--skip-invalid",
        "-f",
        "json",
    )
    assert code == 0 and [r["contact"] for r in json.loads(out)["rows"]] == ["good@x.example"]


def test_s6_exit_3_is_never_a_bare_traceback(tmp_path: Path) -> None:
    """§6: "3 internal error (with a short bug-report hint, never a bare traceback)"."""
    path = write(tmp_path, "c.yaml", "\x00\x01 binary")
    code, out, err = run("validate", path)
    assert code in (1, 3) and "Traceback" not in out + err


# --------------------------------------------------------------------------- runner


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the embedded defaults (./cadence.db, ./outbox)."""
    monkeypatch.chdir(tmp_path)
    for name in ("CADENCE_DB", "CADENCE_TRANSPORT", "CADENCE_UNSUBSCRIBE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def outbox(state: Path) -> list[email.message.EmailMessage]:
    folder = state / "outbox"
    if not folder.exists():
        return []
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(folder.glob("*.eml"))
    ]


def launch_spec(state: Path) -> None:
    write(state, "outbound.yaml", SPEC_EXAMPLE)
    write(state, "contacts.csv", CONTACTS_CSV)
    code, _, err = run(
        "launch", "outbound.yaml", "--contacts", "contacts.csv",
        "--start", "2026-03-06T07:00", "--send-at", "09:30",
    )  # fmt: skip
    assert code == 0, err


def test_s6_embedded_defaults_db_and_outbox(state: Path) -> None:
    """§6: "the state store is a SQLite file (`CADENCE_DB`, default `./cadence.db`), and the
    default transport writes each outgoing message as an `.eml` file into a local outbox
    folder"."""
    launch_spec(state)
    assert (state / "cadence.db").exists()
    code, _, err = run("run", "--once", "--now", "2026-03-06T15:00Z")
    assert code == 0, err
    messages = outbox(state)
    assert sorted(str(m["To"]) for m in messages) == [
        "Ava Nakamura <ava@northwind.example>",
        "Bo Li <bo@globex.example>",
        "Cy <cy@initech.example>",
    ]
    assert {str(m["Subject"]) for m in messages} == {
        "Northwind and on-call load",
        "Globex and on-call load",
        "Initech and on-call load",
    }


def test_s7_idempotent_runs_and_launches(state: Path) -> None:
    """§7: "Running `cadence run` twice … sends nothing twice. `cadence launch` of the same
    contacts twice does not enrol them twice." """
    launch_spec(state)
    launch_spec(state)
    for _ in range(2):
        assert run("run", "--once", "--now", "2026-03-06T15:00Z")[0] == 0
    assert len(outbox(state)) == 3
    status = json.loads(run("status", "-f", "json")[1])
    assert sum(c["enrolled"] for c in status["cadences"]) == 3
    assert sum(c["sent"] for c in status["cadences"]) == 3


def test_s7_message_id_deterministic_and_follow_up_threading(state: Path) -> None:
    """§7: "Every message has a deterministic `Message-ID`"; R3: reply with `Re:`,
    `In-Reply-To`, `References`, quoting the template."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
        "  - {id: b, day: 2, email: {template: fu, send: same_time_as_previous, follow_up: true}}\n"
    )
    utc_cadence(state, steps)
    write(state, "one.csv", ONE)
    assert run("launch", "c.yaml", "--contacts", "one.csv", "--start", "2026-03-06T06:00Z")[0] == 0
    assert run("run", "--once", "--now", "2026-03-06T10:01Z")[0] == 0
    assert run("run", "--once", "--now", "2026-03-07T10:01Z")[0] == 0
    first, second = sorted(outbox(state), key=lambda m: str(m["Date"]))
    assert str(first["Subject"]) == "Hello Ava"
    assert str(second["Subject"]) == "Re: Hello Ava"
    assert str(second["In-Reply-To"]) == str(first["Message-ID"])
    assert str(first["Message-ID"]) in str(second["References"])
    body = second.get_content()
    assert "Following up." in body and "> Hi Ava," in body


def test_s7_signals_win_and_suppress_everywhere(state: Path) -> None:
    """§7: "A reply, bounce or unsubscribe recorded before a step is sent stops it;
    unsubscribed and bounced addresses are suppressed for every cadence." """
    launch_spec(state)
    assert run("run", "--once", "--now", "2026-03-06T15:00Z")[0] == 0
    assert (
        run("event", "reply", "--contact", "ava@northwind.example", "--now", "2026-03-06T16:00Z")[0]
        == 0
    )
    assert (
        run("event", "unsubscribe", "--contact", "bo@globex.example", "--now", "2026-03-06T16:00Z")[
            0
        ]
        == 0
    )
    assert run("run", "--once", "--now", "2026-03-20T15:00Z")[0] == 0
    sent_to = [str(m["To"]) for m in outbox(state)]
    assert sum("ava@" in t for t in sent_to) == 1
    assert sum("bo@" in t for t in sent_to) == 1
    tasks = json.loads(run("tasks", "list", "-f", "json", "--now", "2026-03-20T15:00Z")[1])
    assert {t["contact"] for t in tasks} <= {"cy@initech.example"}
    other = write(state, "other.yaml", SPEC_EXAMPLE.replace("name: Outbound", "name: Other"))
    code, out, err = run(
        "launch", other, "--contacts", "contacts.csv", "--send-at", "09:30", "-f", "json",
        "--start", "2026-03-23T07:00",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["suppressed"] == ["bo@globex.example"]


def test_s7_bad_rows_enrol_nobody_unless_skip_invalid(state: Path) -> None:
    """§6: "a launch with bad rows enrols nobody unless `--skip-invalid` is given"."""
    write(state, "outbound.yaml", SPEC_EXAMPLE)
    write(state, "contacts.csv", CONTACTS_CSV + "broken,,,,\n")
    args = ["launch", "outbound.yaml", "--contacts", "contacts.csv", "--send-at", "09:30"]
    code, _, err = run(*args)
    assert code == 1 and "row 4" in err
    status = json.loads(run("status", "-f", "json")[1])
    assert sum(c["enrolled"] for c in status["cadences"]) == 0
    code, out, err = run(*args, "--skip-invalid", "-f", "json")
    assert code == 0 and json.loads(out)["enrolled"] == 3


def test_s2_enrolment_pinned_to_version(state: Path) -> None:
    """§2: "editing the file never changes what in-flight contacts get"."""
    launch_spec(state)
    (state / "outbound.yaml").write_text(
        SPEC_EXAMPLE.replace("and on-call load", "CHANGED"), encoding="utf-8"
    )
    assert run("run", "--once", "--now", "2026-03-06T15:00Z")[0] == 0
    assert all("on-call load" in str(m["Subject"]) for m in outbox(state))


def test_r5_open_task_holds_and_late_completion_shifts(state: Path) -> None:
    """R5: "steps after a task are held until the task is done or skipped. When a task is
    completed late, the rest of that person's schedule shifts by the lateness (whole
    campaign days)"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
        "  - {id: c, day: 2, call: {at: '09:00'}}\n"
        "  - {id: b, day: 3, email: {template: b, send: {at: '10:00'}}}\n"
        "  - {id: d, day: 5, email: {template: b, send: {at: '10:00'}}}\n"
    )
    utc_cadence(state, steps)
    write(state, "one.csv", ONE)
    assert run("launch", "c.yaml", "--contacts", "one.csv", "--start", "2026-03-06T06:00Z")[0] == 0
    assert run("run", "--once", "--now", "2026-03-06T10:01Z")[0] == 0  # a sent
    assert run("run", "--once", "--now", "2026-03-07T09:01Z")[0] == 0  # call opened
    assert run("run", "--once", "--now", "2026-03-08T11:00Z")[0] == 0  # day 3, 11:00
    assert len(outbox(state)) == 1  # b is held by the open call
    (task,) = json.loads(run("tasks", "list", "-f", "json", "--now", "2026-03-08T11:00Z")[1])
    # Call due Sat 7th (day 2), done Mon 9th: two campaign days late.
    code, _, err = run("tasks", "done", str(task["id"]), "--now", "2026-03-09T08:00Z")
    assert code == 0, err
    assert run("run", "--once", "--now", "2026-03-09T12:00Z")[0] == 0
    assert len(outbox(state)) == 1  # b moved to day 3 + 2 = Tue 10th 10:00
    assert run("run", "--once", "--now", "2026-03-10T10:01Z")[0] == 0
    assert len(outbox(state)) == 2
    assert run("run", "--once", "--now", "2026-03-11T10:01Z")[0] == 0
    assert len(outbox(state)) == 2  # d: day 5 + 2 = Thu 12th, gap kept
    assert run("run", "--once", "--now", "2026-03-12T10:01Z")[0] == 0
    assert len(outbox(state)) == 3


def test_r6_task_show_has_compose_links(state: Path) -> None:
    """R6 at run time: `cadence tasks show` gives the compose view and links."""
    steps = "  - {id: a, day: 1, email: {template: a, send: task}}\n"
    utc_cadence(state, steps)
    write(state, "one.csv", ONE)
    assert run("launch", "c.yaml", "--contacts", "one.csv", "--start", "2026-03-06T06:00Z")[0] == 0
    assert run("run", "--once", "--now", "2026-03-06T09:01Z")[0] == 0
    (task,) = json.loads(run("tasks", "list", "-f", "json", "--now", "2026-03-06T09:01Z")[1])
    code, out, err = run("tasks", "show", str(task["id"]))
    assert code == 0, err
    assert "ava@northwind.example" in out and "Hello Ava" in out
    assert "mail.google.com" in out and "outlook.office.com" in out and "mailto:" in out


def test_s7_header_injection_from_contact_data_impossible(state: Path) -> None:
    """§7: "header injection from contact data is impossible"."""
    steps = "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
    utc_cadence(state, steps)
    people = [{"email": "a@x.example", "first_name": "Eve\r\nBcc: victim@evil.example"}]
    write(state, "c.json", json.dumps(people))
    code, _, err = run("launch", "c.yaml", "--contacts", "c.json", "--start", "2026-03-06T06:00Z")
    assert code == 0, err
    assert run("run", "--once", "--now", "2026-03-06T10:01Z")[0] == 0
    (message,) = outbox(state)
    assert message["Bcc"] is None
    raw = next((state / "outbox").glob("*.eml")).read_bytes()
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in headers


def test_s7_yaml_loading_is_safe(tmp_path: Path) -> None:
    """§7: "YAML loading is safe (no arbitrary tags, bounded alias expansion)"."""
    tag = write(tmp_path, "tag.yaml", "cadence: !!python/object/apply:os.system ['echo pwned']\n")
    code, found = findings(tag)
    assert code == 1 and found[0]["rule"] == "yaml/tag"
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        name = chr(ord("a") + i)
        bomb += f"{name}: &{name} [{', '.join('*' + prev for _ in range(10))}]\n"
    code, found = findings(write(tmp_path, "bomb.yaml", bomb))
    assert code == 1 and any(f["rule"] == "yaml/aliases" for f in found)


def test_s6_template_failing_at_render_is_a_clear_error_not_a_bug(
    tmp_path: Path, one: Path
) -> None:
    """§6: exit "1 findings / failures … 3 internal error": a template that compiles but
    fails for a contact (or touches what the §7 sandbox refuses) is the user's to fix."""
    for i, expr in enumerate(["{{ 1/0 }}", "{{ range(10**9) | list }}"]):
        text = cadence_text(
            "  - {id: a, day: 1, email: {template: x, send: {at: '10:00'}}}\n", "  timezone: UTC\n"
        ).replace("templates:\n", f"templates:\n  x:\n    subject: s\n    body: '{expr}'\n")
        path = write(tmp_path, f"r{i}.yaml", text)
        code, _, err = run("preview", path, "--contact", "ava@northwind.example")
        assert code == 1, err
        assert "does not render" in err and "ava@northwind.example" in err
        assert "bug" not in err
        code, _, err = run(
            "plan",
            path,
            "--contacts",
            one,
            "--render",
            "-f",
            "jsonl",
            "--start",
            "2026-03-06T06:00Z",
        )
        assert code == 1 and "does not render" in err


def test_r3_r4_quote_is_template_and_time_is_actual_send(state: Path) -> None:
    """R3: "The appended copy is always the campaign's template rendered for that contact —
    never the edits a rep made to an email task before sending it." R4: after a hand-sent
    email, `same_time_as_previous` "uses the time it was actually sent"."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: task}}\n"
        "  - {id: b, day: 2, email: {template: fu, send: same_time_as_previous, follow_up: true}}\n"
    )
    utc_cadence(state, steps)
    write(state, "one.csv", ONE)
    write(state, "edit.txt", "Rep's own words.\n")
    assert run("launch", "c.yaml", "--contacts", "one.csv", "--start", "2026-03-06T06:00Z")[0] == 0
    assert run("run", "--once", "--now", "2026-03-06T09:01Z")[0] == 0
    (task,) = json.loads(run("tasks", "list", "-f", "json", "--now", "2026-03-06T09:01Z")[1])
    code, _, err = run(
        "tasks", "send", str(task["id"]), "--body-file", "edit.txt", "--now", "2026-03-06T13:37Z"
    )
    assert code == 0, err
    assert run("run", "--once", "--now", "2026-03-07T13:36Z")[0] == 0
    assert len(outbox(state)) == 1  # not before 13:37 on day 2
    assert run("run", "--once", "--now", "2026-03-07T13:38Z")[0] == 0
    first, second = sorted(outbox(state), key=lambda m: str(m["Date"]))
    assert "Rep's own words." in first.get_content()
    assert str(second["Date"]) == "Sat, 07 Mar 2026 13:38:00 +0000"
    body = second.get_content()
    assert "> Hi Ava," in body and "Rep's own words" not in body
    assert str(second["In-Reply-To"]) == str(first["Message-ID"])


def test_s5_send_window_and_daily_limit_are_for_automatic_emails_only(
    tmp_path: Path,
) -> None:
    """§4/§5: "automatic emails only go out inside it"; "automatic emails per sender per
    day": tasks keep their `at` time and do not count against the limit."""
    steps = (
        "  - {id: c, day: 1, call: {at: '07:00'}}\n"
        "  - {id: e, day: 2, email: {template: a, send: task, at: '06:30'}}\n"
    )
    settings = '  send_window: {start: "08:00", end: "18:00"}\n  daily_limit: 1\n'
    contacts = write(tmp_path, "z.csv", "email\na@x.example\nb@x.example\n")
    rows = plan_rows(
        utc_cadence(tmp_path, steps, settings), contacts, "--start", "2026-03-06T06:00Z"
    )
    assert {due(rows, "c", c) for c in ("a@x.example", "b@x.example")} == {"2026-03-06T07:00:00Z"}
    assert {due(rows, "e", c) for c in ("a@x.example", "b@x.example")} == {"2026-03-07T06:30:00Z"}


def test_s7_bounce_suppresses_and_ends(state: Path) -> None:
    """§7: "unsubscribed and bounced addresses are suppressed for every cadence";
    `remove_on_bounce: true` ends the enrolment."""
    steps = (
        "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
        "  - {id: b, day: 2, email: {template: b, send: {at: '10:00'}}}\n"
    )
    utc_cadence(state, steps)
    write(state, "one.csv", ONE)
    assert run("launch", "c.yaml", "--contacts", "one.csv", "--start", "2026-03-06T06:00Z")[0] == 0
    assert run("run", "--once", "--now", "2026-03-06T10:01Z")[0] == 0
    code, _, err = run(
        "event", "bounce", "--contact", "AVA@northwind.example", "--now", "2026-03-06T11:00Z"
    )
    assert code == 0, err
    assert run("run", "--once", "--now", "2026-03-07T10:01Z")[0] == 0
    assert len(outbox(state)) == 1
    (entry,) = json.loads(run("status", "-f", "json")[1])["cadences"]
    assert entry["finished"]["bounced"] == 1 and entry["active"] == 0
    utc_cadence(state, steps.replace("10:00", "11:00"), name="other.yaml")
    code, out, _ = run(
        "launch",
        "other.yaml",
        "--contacts",
        "one.csv",
        "-f",
        "json",
        "--start",
        "2026-03-09T06:00Z",
    )
    assert code == 0 and json.loads(out)["suppressed"] == ["ava@northwind.example"]


def test_s6_transport_and_db_settings(state: Path) -> None:
    """§6: "`--transport` / `CADENCE_TRANSPORT`, one of `outbox:DIR` …"; "`CADENCE_DB`";
    credentials "never from a file in the repo" (so not in the URL)."""
    steps = "  - {id: a, day: 1, email: {template: a, send: {at: '10:00'}}}\n"
    utc_cadence(state, steps)
    write(state, "one.csv", ONE)
    env = {"CADENCE_DB": str(state / "other.db"), "CADENCE_TRANSPORT": "outbox:sent"}
    code, _, err = run(
        "launch", "c.yaml", "--contacts", "one.csv", "--start", "2026-03-06T06:00Z", env=env
    )
    assert code == 0, err
    assert (state / "other.db").exists() and not (state / "cadence.db").exists()
    assert run("run", "--once", "--now", "2026-03-06T10:01Z", env=env)[0] == 0
    assert len(list((state / "sent").glob("*.eml"))) == 1
    code, _, err = run("run", "--once", "--transport", "smtp://u:p@127.0.0.1:1", env=env)
    assert code == 2 and "CADENCE_SMTP_USER" in err
    code, _, err = run("run", "--every", "not a cron", env=env)
    assert code == 2
