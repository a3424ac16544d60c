"""`cadence launch`: all or nothing, no doubles, suppression, pinned versions."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence_engine.cli import cadence
from cadence_engine.engine.store.sqlite import SqliteStore
from tests.conftest import CADENCES
from tests.helpers.runner_env import ONE_EMAIL, write_cadence, write_contacts


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cadence, list(args))
    return result.exit_code, result.output


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENCE_DB", str(tmp_path / "state.db"))
    monkeypatch.setenv("CADENCE_TRANSPORT", f"outbox:{tmp_path / 'outbox'}")


def test_choose_at_launch_without_send_at_is_a_usage_error(tmp_path: Path) -> None:
    code, out = _cli(
        "launch", str(CADENCES / "heads-of-platform.yaml"), "--contacts",
        str(CADENCES / "contacts.csv"),
    )  # fmt: skip
    assert code == 2 and "--send-at" in out
    assert not (tmp_path / "state.db").exists() or _enrolled(tmp_path) == 0


def _enrolled(folder: Path) -> int:
    with SqliteStore(folder / "state.db") as store:
        return sum(v.enrolled for v in store.status(0))


def test_example_cadence_launches_and_twice_is_not_double(tmp_path: Path) -> None:
    args = (
        "launch", str(CADENCES / "heads-of-platform.yaml"), "--contacts",
        str(CADENCES / "contacts.csv"), "--send-at", "09:00",
    )  # fmt: skip
    code, out = _cli(*args)
    assert code == 0 and "enrolled 28" in out
    code, out = _cli(*args)
    assert code == 0 and "enrolled 0" in out
    assert out.count("already enrolled") == 28
    assert _enrolled(tmp_path) == 28


def test_bad_rows_enrol_nobody_unless_skip_invalid(tmp_path: Path) -> None:
    contacts = write_contacts(tmp_path, 3)
    contacts.write_text(contacts.read_text() + "not-an-address,X,Y\n")
    path = write_cadence(tmp_path)
    code, out = _cli("launch", str(path), "--contacts", str(contacts))
    assert code == 1 and "row 4" in out
    assert _enrolled(tmp_path) == 0
    code, out = _cli("launch", str(path), "--contacts", str(contacts), "--skip-invalid")
    assert code == 0 and "enrolled 3" in out and "not an email address" in out


def test_enrolments_keep_their_version_after_the_file_changes(tmp_path: Path) -> None:
    path = write_cadence(tmp_path)
    contacts = write_contacts(tmp_path, 1)
    code, _ = _cli(
        "launch", str(path), "--contacts", str(contacts), "--start", "2026-03-02T08:00Z",
        "--now", "2026-03-02T08:00Z",
    )  # fmt: skip
    assert code == 0
    path.write_text(ONE_EMAIL.replace("Hello {{", "Changed {{"))
    code, _ = _cli("run", "--once", "--now", "2026-03-02T10:00Z")
    assert code == 0
    (eml,) = (tmp_path / "outbox").iterdir()
    msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert msg["Subject"] == "Hello P0"
    with SqliteStore(tmp_path / "state.db") as store:
        (version,) = store.versions()
        assert "Hello {{" in store.version(version)[1]


def test_bad_when_is_a_usage_error(tmp_path: Path) -> None:
    code, out = _cli(
        "launch", str(write_cadence(tmp_path)), "--contacts", str(write_contacts(tmp_path, 1)),
        "--start", "next tuesday",
    )  # fmt: skip
    assert code == 2 and "--start" in out


def test_launch_of_an_edited_file_pins_new_contacts_to_the_new_version(tmp_path: Path) -> None:
    path = write_cadence(tmp_path)
    old_list = write_contacts(tmp_path, 2, "old.csv")  # person0, person1
    new_list = write_contacts(tmp_path, 3, "new.csv")  # person0..2
    at = ("--start", "2026-03-02T08:00Z", "--now", "2026-03-02T08:00Z")
    assert _cli("launch", str(path), "--contacts", str(old_list), *at)[0] == 0
    path.write_text(ONE_EMAIL.replace("Hello {{", "Changed {{"))
    code, out = _cli("launch", str(path), "--contacts", str(new_list), *at)
    assert code == 0 and "enrolled 1" in out and out.count("already enrolled") == 2
    with SqliteStore(tmp_path / "state.db") as store:
        old, new = sorted(store.status(0), key=lambda v: v.enrolled, reverse=True)
        assert (old.enrolled, new.enrolled) == (2, 1) and old.cadence_hash != new.cadence_hash
    assert _cli("run", "--once", "--now", "2026-03-02T10:00Z")[0] == 0
    subjects = sorted(
        str(message_from_bytes(p.read_bytes(), policy=policy.default)["Subject"])
        for p in (tmp_path / "outbox").iterdir()
    )
    assert subjects == ["Changed P2", "Hello P0", "Hello P1"]


def test_send_at_time_of_day_and_instant(tmp_path: Path) -> None:
    path = write_cadence(tmp_path)
    contacts = tmp_path / "c.csv"
    contacts.write_text("email,timezone\nava@x.example,Europe/Amsterdam\nben@x.example,\n")
    at = ("--start", "2026-03-02T06:00Z", "--now", "2026-03-02T06:00Z")
    assert _cli("launch", str(path), "--contacts", str(contacts), "--send-at", "11:00", *at)[0] == 0
    with SqliteStore(tmp_path / "state.db") as store:
        # HH:MM: that time on day 1 in each contact's own zone (UTC is the default here).
        assert [store.step_runs(i)[0].due_utc for i in (1, 2)] == [
            1772445600,  # 2026-03-02T10:00Z = 11:00 Amsterdam
            1772449200,  # 2026-03-02T11:00Z
        ]
    code, _ = _cli(
        "launch", str(path), "--contacts", str(contacts), "--send-at", "2026-03-03T15:30Z", *at,
        "--db", str(tmp_path / "other.db"),
    )  # fmt: skip
    assert code == 0
    with SqliteStore(tmp_path / "other.db") as store:
        assert {store.step_runs(i)[0].due_utc for i in (1, 2)} == {1772551800}  # the instant


def test_a_template_failing_for_one_contact_enrols_nobody(tmp_path: Path) -> None:
    path = tmp_path / "seats.yaml"
    path.write_text(
        "cadence: 1\nname: Seats\nsender: {name: Dana, email: dana@acme.example}\n"
        "contact_fields: [seats]\nsettings: {default_timezone: UTC}\n"
        "templates:\n  t:\n    subject: Seats\n"
        "    body: '{{ 100 // (contact.seats | int) }} per seat'\n"
        "steps:\n  - {id: a, day: 1, email: {template: t, send: {at: '10:00'}}}\n",
        encoding="utf-8",
    )
    contacts = tmp_path / "c.csv"
    contacts.write_text("email,seats\na@x.example,5\nb@x.example,0\n", encoding="utf-8")
    code, out = _cli("launch", str(path), "--contacts", str(contacts))
    assert code == 1, out
    assert "b@x.example" in out and "division" in out.lower()
    assert _enrolled(tmp_path) == 0
    with SqliteStore(tmp_path / "state.db") as store:
        assert store.status(0) == []  # a refused launch leaves no cadence in status


def test_launch_takes_the_contact_list_options_plan_takes(tmp_path: Path) -> None:
    from cadence_engine.cli import launch_command, plan_command

    def contact_options(command: object) -> set[str]:
        params = getattr(command, "params", [])
        return {o for p in params for o in p.opts if "contacts" in o or o == "--skip-invalid"}

    assert contact_options(plan_command) <= contact_options(launch_command)
    listed = tmp_path / "export.txt"  # an extension that says nothing
    listed.write_text('{"email": "ava@northwind.example"}\n', encoding="utf-8")
    path = write_cadence(tmp_path)
    code, out = _cli("launch", str(path), "--contacts", str(listed))
    assert code == 2 and "--contacts-format" in out  # a usage error: the option is the way
    code, out = _cli("launch", str(path), "--contacts", str(listed), "--contacts-format", "jsonl")
    assert code == 0 and "enrolled 1" in out, out
