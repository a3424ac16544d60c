"""Fast paths of the message builder and the store give exactly what the full work gives.

Each fast path handles the common case (plain ASCII) with less work; these properties
hold it equal to the full version on inputs made to sit on the edges: label and local
part lengths around their limits, dots, hyphens, upper case, non-ASCII, spaces.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence_engine.engine import delivery
from cadence_engine.engine.addresses import (
    AddressError,
    MailAddress,
    address_problem,
    full_check,
    parse_address,
)
from cadence_engine.engine.contacts import _EMAIL, email_problem
from cadence_engine.engine.launch import launch
from cadence_engine.engine.plan import Action
from cadence_engine.engine.store import EnrolmentState, StepRow, StepState
from cadence_engine.engine.store.sqlite import SqliteStore, _row
from cadence_engine.engine.unsubscribe import mailto
from tests.helpers.mail import parse_strict, stepless_cadence

_ATOM_CHARS = "aZ09-_.+!~'"
_LABEL_CHARS = "aZ9-_ü."


def _label(max_size: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(_LABEL_CHARS, max_size=max_size),
        st.integers(60, 66).map(lambda n: "a" * n),
    )


addresses = st.one_of(
    st.text("aZ9.-@ ü_", max_size=40),
    st.builds(
        lambda local, labels, dot: local + "@" + ".".join(labels) + dot,
        st.one_of(st.text(_ATOM_CHARS + "@ é", max_size=20), st.integers(62, 66).map("x".__mul__)),
        st.lists(_label(12), min_size=1, max_size=5),
        st.sampled_from(["", "."]),
    ),
    st.integers(230, 260).map(lambda n: "a" * 10 + "@" + ".".join(["b" * 60] * 4)[: n - 11]),
)


def _outcome(check: object, text: str) -> MailAddress | str:
    try:
        return check(text)  # type: ignore[operator, no-any-return]
    except AddressError as exc:
        return f"AddressError: {exc}"


@settings(max_examples=2000)
@given(addresses)
def test_the_address_fast_path_agrees_with_the_full_check(text: str) -> None:
    assert _outcome(parse_address, text) == _outcome(full_check, text)


def _two_checks(email: str) -> str | None:
    """The contact row's address check done the long way: both checks, every time."""
    if _EMAIL.match(email) is None:
        return f"{email!r} is not an email address"
    problem = address_problem(email)
    return None if problem is None else f"{email!r} cannot be sent to: {problem}"


@settings(max_examples=2000)
@given(
    st.one_of(
        addresses,
        st.builds(
            "{}@{}.{}".format,
            st.text("ab.", max_size=3),
            st.text("cd.", max_size=3),
            st.text("e.-", max_size=3),
        ),
    )
)
def test_the_contact_address_fast_path_agrees_with_both_checks(text: str) -> None:
    assert email_problem(text) == _two_checks(text)


def _unstructured_the_long_way(name: str, text: str) -> str:
    """`delivery.unstructured` without its one-line shortcut: always tokens and `_fold`."""
    if delivery._PRINTABLE_ASCII.fullmatch(text) and "=?" not in text:
        folded = delivery._fold(name, delivery._TOKENS.findall(text))
        if folded is not None:
            return folded
    words = delivery.encoded_words(text)
    return delivery._fold(name, [words[0], *(" " + w for w in words[1:])]) or ""


@settings(max_examples=2000)
@given(
    st.one_of(
        st.text(" ab=?", max_size=90),
        st.builds("{}{}".format, st.text(" x", max_size=3), st.integers(60, 75).map("y".__mul__)),
        st.text(max_size=30),
    )
)
def test_the_one_line_subject_is_what_folding_gives(text: str) -> None:
    assert delivery.unstructured("Subject", text) == _unstructured_the_long_way("Subject", text)


# -- the store's row decoding ---------------------------------------------------------

# StepRow's fields in the order of _ROW_SELECT's columns (what `_row` builds positionally).
_COLUMNS = [
    "id",
    "enrolment_id",
    "cadence_name",
    "cadence_hash",
    "email",
    "contact",
    "uid",
    "unsubscribe_token",
    "enrolment_state",
    "suppressed",
    "step_id",
    "step_index",
    "day",
    "action",
    "zone",
    "due_utc",
    "planned_utc",
    "thread_step_id",
    "message_id",
    "state",
    "fence",
    "attempts",
    "by_hand",
    "subject",
    "body",
    "sent_utc",
    "done_utc",
    "answer",
    "thread_sent_utc",
    "thread_subject",
    "lease_until",
    "unsubscribe_url",
]


def test_a_decoded_row_puts_each_column_in_its_field() -> None:
    raw: list[Any] = [f"v{i}" for i in range(len(_COLUMNS))]
    raw[8], raw[13], raw[19] = "paused", "call task", "open"  # the enum columns
    raw[9], raw[22] = 0, 1  # the boolean ones
    row = _row(tuple(raw))
    assert list(StepRow._fields) == _COLUMNS
    expected = dict(zip(_COLUMNS, raw, strict=True))
    expected |= {"enrolment_state": EnrolmentState.PAUSED, "action": Action.CALL_TASK,
                 "state": StepState.OPEN, "suppressed": False, "by_hand": True}  # fmt: skip
    assert {c: getattr(row, c) for c in _COLUMNS} == expected


TWO_STEPS = """\
cadence: 1
name: Rows
sender: {name: Dana Reyes, email: dana@acme.example}
settings: {skip_weekends: false, default_timezone: UTC}
templates:
  t: {subject: "Hi", body: "Body\\n"}
steps:
  - {id: one, day: 1, email: {template: t, send: {at: "09:00"}}}
  - {id: two, day: 3, email: {template: t, send: {at: "09:00"}}}
"""


@pytest.mark.parametrize("change", ["nothing", "another connection", "this connection"])
def test_step_runs_of_after_a_claim_reads_what_a_fresh_read_gives(
    tmp_path: Path, change: str
) -> None:
    """Right after a claim, with nothing written since, its rows are not read back; once
    anything was written (a pause from another connection, or from this one) every row
    is read as it now is. Either way: what a fresh read gives."""
    (tmp_path / "c.yaml").write_text(TWO_STEPS, encoding="utf-8")
    (tmp_path / "c.csv").write_text("email\na@x.example\nb@x.example\nc@x.example\nd@x.example\n")
    at = datetime(2026, 3, 2, 8, tzinfo=UTC)
    with SqliteStore(tmp_path / "s.db") as store:
        launch(store, tmp_path / "c.yaml", tmp_path / "c.csv", now=at, start="now")
        claim = store.claim(int(at.timestamp()) + 86_400, 3, 300)
        assert len(claim.rows) == 3  # the fourth enrolment has no row in the claim
        unclaimed = next(e.id for e in store.enrolments() if e.email == "d@x.example")
        paused_id = claim.rows[1].enrolment_id
        if change == "another connection":
            with SqliteStore(tmp_path / "s.db") as other:
                assert other.pause(paused_id, int(at.timestamp()), None, "test")
        if change == "this connection":
            assert store.pause(paused_id, int(at.timestamp()), None, "test")
        wanted = [unclaimed, *(r.enrolment_id for r in claim.rows)]
        found = store.step_runs_of([*wanted, 999])  # (an enrolment that does not exist)
        with SqliteStore(tmp_path / "s.db") as fresh:
            assert found == fresh.step_runs_of(wanted)
        assert list(found) == sorted(wanted)
        assert [[s.step_id for s in v] for v in found.values()] == [["one", "two"]] * 4
        assert found[claim.rows[0].enrolment_id][0] == claim.rows[0]  # unchanged: as claimed
        state = found[paused_id][0].enrolment_state
        paused = change != "nothing"
        assert state is (EnrolmentState.PAUSED if paused else EnrolmentState.ACTIVE)


def test_step_runs_of_after_a_claim_inside_a_rolled_back_batch(tmp_path: Path) -> None:
    """A claim inside `batch` is not committed: rolled back, its rows are `planned` again,
    and the read after says so."""
    (tmp_path / "c.yaml").write_text(TWO_STEPS, encoding="utf-8")
    (tmp_path / "c.csv").write_text("email\na@x.example\n")
    at = datetime(2026, 3, 2, 8, tzinfo=UTC)
    with SqliteStore(tmp_path / "s.db") as store:
        launch(store, tmp_path / "c.yaml", tmp_path / "c.csv", now=at, start="now")
        with pytest.raises(RuntimeError), store.batch():
            claim = store.claim(int(at.timestamp()) + 86_400, 10, 300)
            raise RuntimeError("the batch fails")
        found = store.step_runs_of([claim.rows[0].enrolment_id])
        assert [s.state for s in found[claim.rows[0].enrolment_id]] == [StepState.PLANNED] * 2


@settings(max_examples=1000)
@given(st.one_of(st.text(max_size=30), st.text("aZ09_-.~/ %+?&é", max_size=30)))
def test_the_unsubscribe_mailto_quotes_its_subject_as_quote_does(token: str) -> None:
    assert mailto("dana@acme.example", token) == (
        f"mailto:dana+unsubscribe-{token}@acme.example?subject=unsubscribe%20{quote(token)}"
    )


@settings(max_examples=1000)
@given(
    st.one_of(
        st.text(max_size=200),
        st.text("ab \n\r\t\x00\x7fé", max_size=60),
        st.builds(
            lambda n, tail: "x" * n + tail,
            st.integers(895, 905),
            st.sampled_from(["", "\n", "\ny"]),
        ),
    )
)
def test_a_body_reads_back_as_its_cleaned_text(text: str) -> None:
    """The one-scan path for printable ASCII lines and the cleaning path agree: the
    recipient reads `clean_body(text)` with its last line ended, whichever was taken."""
    out = delivery.build_message(
        cadence=stepless_cadence(),
        to_name="",
        to_email="p@example.com",
        subject="s",
        text=text,
        msg_id="<a@acme.example>",
        references=[],
        date=datetime(2026, 3, 2, tzinfo=UTC),
        unsubscribe="mailto:dana@acme.example",
    )
    message = parse_strict(out.data)
    expected = delivery.clean_body(text)
    expected += "" if expected.endswith("\n") else "\n"
    assert message.get_content().replace("\r\n", "\n") == expected
    head = out.data.split(b"\r\n\r\n", 1)[0]
    seven = all(
        len(line) <= 900 and line.isascii() and line.isprintable()
        for line in expected[:-1].split("\n")
    )
    assert (b"Content-Transfer-Encoding: 7bit" in head) == seven
