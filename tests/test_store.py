"""The SQLite store: pragmas, migrations, the append-only log, claim fencing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from engine.errors import UsageError
from engine.store import (
    Decision,
    DecisionKind,
    NewEnrolment,
    NewStep,
    Outcome,
    OutcomeKind,
    SignalKind,
    open_store,
)
from engine.store.migrations import SCHEMA_VERSION
from engine.store.sqlite import SqliteStore


def _enrolment(email: str, due: int = 100) -> NewEnrolment:
    return NewEnrolment(
        email=email,
        contact=json.dumps({"email": email, "fields": {}, "timezone": None, "row": 1}),
        uid=email,
        unsubscribe_token="t-" + email,
        steps=(
            NewStep("a", 0, 1, "send email", "UTC", due, "", None, f"<a.{email}>"),
            NewStep("b", 1, 2, "send email", "UTC", due + 10, "", "a", f"<b.{email}>"),
        ),
    )


def _claim_all(row: object, sent_on: object) -> Decision:
    return Decision(DecisionKind.CLAIM)


def _never_end(kind: SignalKind, h: str) -> tuple[str | None, bool]:
    return ("replied" if kind is SignalKind.REPLY else "bounced"), False


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "state.db")
    s.save_version("h1", "C", "source: yaml", "{}", 0)
    yield s  # type: ignore[misc]
    s.close()


def test_pragmas_and_schema_version(store: SqliteStore) -> None:
    db = sqlite3.connect(store.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()
    assert store.schema_version() == SCHEMA_VERSION


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    for _ in range(2):
        SqliteStore(tmp_path / "s.db").close()
    with SqliteStore(tmp_path / "s.db") as s:
        assert s.schema_version() == SCHEMA_VERSION


def test_postgres_url_is_a_clear_usage_error() -> None:
    with pytest.raises(UsageError, match="postgresql"):
        open_store("postgresql://localhost/cadence")


def test_version_source_is_kept(store: SqliteStore) -> None:
    assert store.version("h1") == ("{}", "source: yaml")


def test_launch_skips_active_duplicates_and_suppressed(store: SqliteStore) -> None:
    first = store.launch("C", "h1", [_enrolment("a@x.example")], 1)
    assert first.enrolled == ("a@x.example",)
    again = store.launch("C", "h1", [_enrolment("a@x.example"), _enrolment("b@x.example")], 2)
    assert again.enrolled == ("b@x.example",)
    assert again.already_enrolled == ("a@x.example",)
    store.record_signal(SignalKind.UNSUBSCRIBE, "c@x.example", None, 3, _never_end)
    third = store.launch("C", "h1", [_enrolment("c@x.example")], 4)
    assert third.suppressed == ("c@x.example",)


def test_event_log_is_append_only(store: SqliteStore) -> None:
    store.launch("C", "h1", [_enrolment("a@x.example")], 1)
    db = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE events SET kind = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM events")
    finally:
        db.close()


def test_claim_holds_later_steps_and_fences(store: SqliteStore) -> None:
    store.launch("C", "h1", [_enrolment("a@x.example")], 1)
    claim = store.claim(1000, 10, 0.0, 1e12, _claim_all)
    # Step b is due too, but held until a is settled.
    assert [r.step_id for r in claim.rows] == ["a"]
    assert store.begin_sending(claim.fence, [claim.rows[0].id]) == {claim.rows[0].id}
    # A stale fence records nothing.
    store.finish(claim.fence - 1, [Outcome(claim.rows[0].id, OutcomeKind.SENT, 5)], _never_end)
    assert store.step_run(claim.rows[0].id).state == "sending"  # type: ignore[union-attr]
    store.finish(claim.fence, [Outcome(claim.rows[0].id, OutcomeKind.SENT, 5)], _never_end)
    nxt = store.claim(1000, 10, 0.0, 1e12, _claim_all)
    assert [r.step_id for r in nxt.rows] == ["b"]
    assert nxt.fence > claim.fence


def test_expired_sending_becomes_unknown_and_claimed_is_reclaimed(store: SqliteStore) -> None:
    store.launch("C", "h1", [_enrolment("a@x.example"), _enrolment("b@x.example")], 1)
    claim = store.claim(1000, 10, 0.0, 50.0, _claim_all)
    by_email = {r.email: r.id for r in claim.rows}
    store.begin_sending(claim.fence, [by_email["a@x.example"]])
    # Lease expired (real time 60 > 50): a was in `sending` → unknown; b only claimed →
    # claimable again.
    again = store.claim(1000, 10, 60.0, 1e12, _claim_all)
    assert [r.email for r in again.rows] == ["b@x.example"]
    assert [r.id for r in store.unknown_sends()] == [by_email["a@x.example"]]
    resolved = store.resolve(by_email["a@x.example"], False, 70)
    assert resolved.state == "planned"
    assert resolved.message_id == "<a.a@x.example>"


def test_signal_during_claim_cancels_before_sending(store: SqliteStore) -> None:
    store.launch("C", "h1", [_enrolment("a@x.example")], 1)
    claim = store.claim(1000, 10, 0.0, 1e12, _claim_all)
    result = store.record_signal(SignalKind.REPLY, "a@x.example", None, 2, _never_end)
    assert result.new and result.ended
    assert store.begin_sending(claim.fence, [claim.rows[0].id]) == set()
    assert store.record_signal(SignalKind.REPLY, "a@x.example", None, 3, _never_end).new is False
