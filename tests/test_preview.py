"""`cadence preview`: what the contact (or the rep, for tasks) sees, through the CLI."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from click.testing import CliRunner

from cadence_engine.cli import cadence

from .conftest import CADENCES

CONTACTS = str(CADENCES / "contacts.csv")
HOP = str(CADENCES / "heads-of-platform.yaml")
ENT = str(CADENCES / "enterprise-expansion.yaml")
WHEN = ["--start", "2026-03-06T07:00", "--send-at", "09:30"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cadence, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_preview_for_a_contact_from_the_list() -> None:
    code, out, _ = run(
        "preview", HOP, "--contact", "Chloe.Garcia@initech.example", "--contacts", CONTACTS, *WHEN
    )
    assert code == 0
    assert "Contact: Chloé García <chloe.garcia@initech.example> (America/Chicago)" in out
    assert "Step 1/7 · intro · day 1 · send email\nDue: Fri 2026-03-06 09:30 CST" in out
    assert "Subject: Initech and on-call load" in out
    # The follow-up quotes the previous email, dated with its planned send time.
    assert "Subject: Re: Quick follow-up, Chloé\nIn reply to: step bump (same thread)" in out
    assert "On Tue, 10 Mar 2026 at 09:30, Dana Reyes <dana@acme.example> wrote:\n> Hi Chloé," in out
    assert "Held until task call-1 is done or skipped." in out
    assert "Task: Call Chloé García\nNotes:\n  Ask about Initech's rotation" in out


def test_email_task_has_compose_view_and_working_links() -> None:
    code, out, _ = run("preview", HOP, "--sample", *WHEN)
    assert code == 0
    assert "Email task: compose view" in out
    gmail = next(x.split(": ", 1)[1].strip() for x in out.splitlines() if "Gmail:" in x)
    query = parse_qs(urlsplit(gmail).query)
    assert query["to"] == ["alex.morgan@example.com"]
    assert query["su"] == ["Closing the loop"]
    assert query["body"][0].startswith("Hi Alex,\n\nI have not heard back")
    assert "  Outlook: https://outlook.office.com/mail/deeplink/compose?to=" in out
    assert "  mailto:  mailto:alex.morgan@example.com?subject=Closing%20the%20loop&body=" in out


def test_sample_contact_leaves_declared_fields_to_the_templates_defaults() -> None:
    code, out, _ = run("preview", ENT, "--sample", "--start", "2026-03-06T07:00")
    assert code == 0
    assert "Subject: Example Corp: your current seats" in out
    assert "Your account team mentioned that" in out


def test_email_task_first_step_and_sent_time_dependency() -> None:
    code, out, _ = run("preview", ENT, "--sample", "--start", "2026-03-06T07:00")
    assert code == 0
    assert "Step 1/12 · opener · day 1 · email task" in out
    assert "Sent at the time of day opener is actually sent (R4)." in out


def test_preview_without_send_at_still_shows_the_emails() -> None:
    code, out, _ = run("preview", HOP, "--sample")
    assert code == 0
    assert "Due: time chosen at launch (pass --send-at to see dates)" in out
    assert "Subject: Example Corp and on-call load" in out


def test_preview_without_send_at_names_the_contacts_own_zone() -> None:
    # The times wait for --send-at; the zone is the contact's whatever the launch time.
    code, out, _ = run(
        "preview", HOP, "--contact", "ben.smith@globex.example", "--contacts", CONTACTS
    )
    assert (
        code == 0 and "Contact: Ben Smith <ben.smith@globex.example> (America/Los_Angeles)" in out
    )
    assert "Due: time chosen at launch" in out


def test_usage_errors_exit_2() -> None:
    assert run("preview", HOP)[0] == 2
    code, _, err = run("preview", HOP, "--sample", "--contact", "a@b.example")
    assert code == 2 and "either --contact EMAIL" in err
    code, _, err = run("preview", HOP, "--contact", "nobody@x.example", "--contacts", CONTACTS)
    assert code == 2 and "no contact 'nobody@x.example' in" in err


def test_a_broken_cadence_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cadence: 1\nname: [\n", encoding="utf-8")
    code, _, err = run("preview", str(bad), "--sample")
    assert code == 1 and str(bad) in err and "Traceback" not in err


def test_contact_by_address_alone_previews_without_a_list() -> None:
    result = CliRunner().invoke(
        cadence,
        ["preview", HOP, "--contact", "sam@example.org", "--send-at", "09:00"],
    )
    assert result.exit_code == 0, result.output
    assert "To: sam@example.org" in result.output
    assert "Hi there," in result.output  # first_name unknown: the template's default


def test_contact_by_address_alone_must_be_an_address() -> None:
    result = CliRunner().invoke(cadence, ["preview", HOP, "--contact", "not-an-address"])
    assert result.exit_code == 2
    assert "'not-an-address' is not an email address" in result.output


def test_sample_values_go_through_the_templates_own_filters(tmp_path: Path) -> None:
    code, out, _ = run("preview", HOP, "--sample", *WHEN)
    assert code == 0
    assert "Platform teams of your engineers" in out  # `default("your")`
    assert "[team_size]" not in out
    cad = tmp_path / "c.yaml"
    text = Path(HOP).read_text(encoding="utf-8")
    cad.write_text(
        text.replace(
            '{{ contact.team_size | default("your") }}', "{{ contact.team_size | upper }}"
        ),
        encoding="utf-8",
    )
    code, out, _ = run("preview", str(cad), "--sample", *WHEN)
    assert code == 0 and "Platform teams of [TEAM_SIZE] engineers" in out


def test_preview_dates_every_level_of_a_follow_up_chain(tmp_path: Path) -> None:
    cad = tmp_path / "chain.yaml"
    cad.write_text(
        "cadence: 1\nname: Chain\nsender: {name: Dana Reyes, email: dana@acme.example}\n"
        "settings: {skip_weekends: false, default_timezone: UTC}\n"
        'templates:\n  a: {subject: A, body: "Body A\\n"}\n  b: {body: "Body B\\n"}\n'
        '  c: {body: "Body C\\n"}\nsteps:\n'
        '  - {id: a, day: 1, email: {template: a, send: {at: "09:00"}}}\n'
        '  - {id: b, day: 2, email: {template: b, send: {at: "10:00"}, follow_up: true}}\n'
        '  - {id: c, day: 3, email: {template: c, send: {at: "11:00"}, follow_up: true}}\n',
        encoding="utf-8",
    )
    code, out, _ = run("preview", str(cad), "--sample", "--start", "2026-03-02T00:00Z")
    assert code == 0
    assert "On Tue, 03 Mar 2026 at 10:00, Dana Reyes <dana@acme.example> wrote:\n> Body B" in out
    assert (
        "> On Mon, 02 Mar 2026 at 09:00, Dana Reyes <dana@acme.example> wrote:\n> > Body A" in out
    )
