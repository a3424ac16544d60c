"""Operating enrolments (SPEC §11): list, show, pause, resume, remove, exclusivity, resolve."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.store.sqlite import SqliteStore
from tests.helpers.runner_env import write_cadence, write_contacts

THREE = """\
cadence: 1
name: Three
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  t: {subject: "Hello", body: "Body\\n"}
steps:
  - {id: a, day: 1, email: {template: t, send: {at: "09:00"}}}
  - {id: b, day: 2, email: {template: t, send: {at: "09:00"}}}
  - {id: c, day: 3, email: {template: t, send: {at: "09:00"}}}
"""


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CADENCE_DB", str(tmp_path / "state.db"))
    monkeypatch.setenv("CADENCE_TRANSPORT", f"outbox:{tmp_path / 'out'}")
    monkeypatch.setenv("CADENCE_UNSUBSCRIBE_URL", "https://acme.example/u/")
    return tmp_path / "state.db"


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cadence, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def launch(folder: Path, text: str = THREE, *extra: str, name: str = "c.yaml") -> str:
    return cli(
        "launch", str(write_cadence(folder, text, name)), "--contacts",
        str(write_contacts(folder, 2)), "--start", "2026-03-02T08:00Z",
        "--now", "2026-03-02T08:00Z", *extra,
    )  # fmt: skip


def steps(email: str) -> dict[str, dict[str, object]]:
    (e,) = json.loads(cli("enrolments", "show", email, "-f", "json"))["enrolments"]
    return {s["step"]: s for s in e["steps"]}


def test_list_and_show_a_contacts_steps_and_events(db: Path) -> None:
    launch(db.parent)
    cli("run", "--once", "--now", "2026-03-02T10:00Z")
    listed = json.loads(cli("enrolments", "list", "-f", "json"))
    assert [(e["contact"], e["state"]) for e in listed] == [
        ("person0@example.com", "active"),
        ("person1@example.com", "active"),
    ]
    assert "person1@example.com" in cli("enrolments", "list", "--cadence", "Three")
    shown = json.loads(cli("enrolments", "show", "PERSON0@example.com", "-f", "json"))
    (enrolment,) = shown["enrolments"]
    a, b, _ = enrolment["steps"]
    assert (a["state"], a["sent_utc"]) == ("sent", "2026-03-02T10:00:00Z")
    assert str(a["message_id"]).startswith("<") and b["state"] == "planned"
    assert (b["due_utc"], b["zone"]) == ("2026-03-03T09:00:00Z", "UTC")
    assert [e["kind"] for e in shown["events"]] == ["launched", "sent"]
    text = cli("enrolments", "show", "person0@example.com")
    assert "due 2026-03-03 09:00Z (2026-03-03 09:00 UTC)" in text and "events:" in text
    assert "not enrolled" in cli("enrolments", "show", "nobody@example.com", code=1)
    assert "not an email address" in cli("enrolments", "show", "a@b", code=2)


def test_pause_holds_everything_and_resume_shifts_the_rest_by_the_pause(db: Path) -> None:
    launch(db.parent)
    cli("run", "--once", "--now", "2026-03-02T10:00Z")
    assert "paused person0@example.com in Three" in cli(
        "enrolments", "pause", "person0@example.com", "--now", "2026-03-02T12:00Z"
    )
    assert "no active enrolment" in cli("enrolments", "pause", "person0@example.com", code=1)
    out = cli("run", "--once", "--now", "2026-03-04T10:00Z")
    assert "sent 1" in out  # person1's b only; person0 is held
    assert steps("person0@example.com")["b"]["state"] == "planned"
    assert json.loads(cli("status", "-f", "json"))["cadences"][0]["paused"] == 1
    cli("enrolments", "resume", "person0@example.com", "--now", "2026-03-05T12:00Z")
    # Paused from 2 to 5 March: three campaign days, so b moves from 3 to 6 March, c to 7.
    after = steps("person0@example.com")
    assert (after["b"]["due_utc"], after["c"]["due_utc"]) == (
        "2026-03-06T09:00:00Z",
        "2026-03-07T09:00:00Z",
    )
    # person0 b (moved to 6 March), and person1 c (moved on by its late b on 4 March).
    assert "sent 2" in cli("run", "--once", "--now", "2026-03-06T10:00Z")


def test_remove_ends_the_enrolment_and_keeps_its_history(db: Path) -> None:
    launch(db.parent)
    cli("run", "--once", "--now", "2026-03-02T10:00Z")
    out = cli("enrolments", "remove", "person1@example.com", "--now", "2026-03-02T11:00Z")
    assert "removed person1@example.com from Three (2 step(s) cancelled)" in out
    removed = json.loads(cli("enrolments", "list", "--state", "removed", "-f", "json"))
    assert [e["contact"] for e in removed] == ["person1@example.com"]
    history = steps("person1@example.com")
    assert [s["state"] for s in history.values()] == ["sent", "cancelled", "cancelled"]
    assert "sent 1" in cli("run", "--once", "--now", "2026-03-03T10:00Z")  # person0 only
    assert "no active or paused enrolment" in cli(
        "enrolments", "remove", "person1@example.com", code=1
    )


def test_a_contact_active_in_another_cadence_is_skipped_unless_overlap_is_allowed(
    db: Path,
) -> None:
    launch(db.parent)
    other = THREE.replace("name: Three", "name: Other")
    out = launch(db.parent, other, name="other.yaml")
    assert "enrolled 0" in out
    assert "skipped person0@example.com: active in Three" in out
    report = json.loads(launch(db.parent, other, "-f", "json", name="other.yaml"))
    assert report["overlapping"][0] == {"email": "person0@example.com", "active_in": "Three"}
    assert "enrolled 2" in launch(db.parent, other, "--allow-overlap", name="other.yaml")


def _unknown_sends(db: Path, count: int) -> list[int]:
    """A run that died with `count` emails `sending`: their lease is over at once."""
    with SqliteStore(db) as store:
        claim = store.claim(int(time.time()) + 10**8, count, 0.01)
        ours = store.begin_sending(claim.fence, [r.id for r in claim.rows])
    time.sleep(0.05)
    return sorted(ours)


def test_resolve_several_keys_or_all_of_a_cadence(db: Path) -> None:
    launch(db.parent)
    first, second = _unknown_sends(db, 2)
    status = json.loads(cli("status", "-f", "json", code=1))
    assert status["cadences"][0]["unknown"] == 2 and len(status["unknown_sends"]) == 2
    assert "no send with key 999" in cli("resolve", "999", "--sent", code=1)
    assert "give the keys" in cli("resolve", "--sent", code=2)
    out = cli("resolve", str(first), f"#{second}", "--resend")
    assert f"send {first}" in out and f"send {second}" in out
    assert "is planned, not unknown" in cli("resolve", str(first), "--sent", code=2)
    cli("run", "--once", "--now", "2026-03-02T10:00Z")
    cli("enrolments", "pause", "person0@example.com")  # nothing of person0 is claimed now
    (third,) = _unknown_sends(db, 5)
    assert "no such cadence" in cli("resolve", "--all", "--cadence", "Nope", "--sent", code=2)
    assert f"send {third}" in cli("resolve", "--all", "--cadence", "Three", "--sent")
    assert "no unknown sends" in cli("resolve", "--all", "--sent")
    assert cli("status")


def test_tables_keep_their_columns_aligned_for_long_addresses(db: Path) -> None:
    folder = db.parent
    long = "a.very.long.mailbox.name.for.the.table@subsidiary.northwind.example"
    (folder / "long.csv").write_text(f"email\nbo@example.com\n{long}\n", encoding="utf-8")
    cli(
        "launch", str(write_cadence(folder, THREE, "c.yaml")), "--contacts",
        str(folder / "long.csv"), "--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z",
    )  # fmt: skip
    header, *rows = cli("enrolments", "list").splitlines()
    column = header.index("CADENCE")
    assert [row[column:] for row in rows] == ["Three", "Three"]
    assert all(row[column - 1] == " " for row in rows)
    shown = cli("enrolments", "show", "bo@example.com").splitlines()
    assert "  " not in shown[1].split("UTC)", 1)[1]  # one space before the Message-ID
