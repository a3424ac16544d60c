"""The auto-reply pause rule and mailbox URLs: pure parts of the inbound package."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from engine.errors import UsageError
from engine.inbound.imap import parse_mailbox
from engine.inbound.pause import plan_pause
from engine.inbound.store import Enrolled, Handled
from engine.model import Cadence
from engine.store import StepRow

CADENCE = Cadence.from_data(
    {
        "cadence": 1,
        "name": "C",
        "sender": {"name": "Dana", "email": "dana@acme.example"},
        "settings": {"skip_weekends": True, "default_timezone": "Europe/Amsterdam"},
        "templates": {},
        "steps": [],
    }
)
TUESDAY_NOON = int(datetime(2026, 3, 3, 11, tzinfo=UTC).timestamp())  # 12:00 in Amsterdam


def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def _row(step_run_id: int, due: str) -> StepRow:
    at = _utc(due)
    return StepRow(
        id=step_run_id, enrolment_id=1, cadence_name="C", cadence_hash="h", email="a@b.example",
        contact="{}", uid="u", unsubscribe_token="t", enrolment_state="active",
        suppressed=False, step_id=f"s{step_run_id}", step_index=step_run_id, day=1,
        action="send email", zone="Europe/Amsterdam", due_utc=at, planned_utc=at,
        depends_on="", thread_step_id=None, message_id=None, state="planned", fence=None,
        attempts=0, by_hand=False, subject=None, body=None, sent_utc=None, done_utc=None,
        answer=None,
    )  # fmt: skip


def _message(returns: date | None) -> Handled:
    enrolled = Enrolled(1, "C", "h", "a@b.example", "active", TUESDAY_NOON - 86400)
    return Handled(
        "mid:<x@y>", 7, "auto-reply", "auto-reply (Auto-Submitted: auto-replied)", "imaps://…",
        TUESDAY_NOON, email="a@b.example", pause=enrolled, return_date=returns,
    )  # fmt: skip


def _local(seconds: int) -> str:
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(seconds, ZoneInfo("Europe/Amsterdam")).strftime("%a %m-%d %H:%M")


def test_back_on_friday_resumes_on_monday_and_moves_by_the_pause() -> None:
    # Wednesday 09:00 and Friday 14:00 (Amsterdam) emails; back Friday 6 March.
    rows = [_row(1, "2026-03-04T08:00"), _row(2, "2026-03-06T13:00")]
    plan = plan_pause(CADENCE, _message(date(2026, 3, 6)), rows)
    assert _local(plan.until_utc) == "Mon 03-09 00:00"
    assert plan.days == 4  # Wed, Thu, Fri, Mon
    assert [_local(m.due_utc) for m in plan.moves] == ["Tue 03-10 09:00", "Thu 03-12 14:00"]
    assert "paused until 2026-03-09 (back 2026-03-06)" in plan.detail


def test_no_return_date_pauses_five_campaign_days() -> None:
    plan = plan_pause(CADENCE, _message(None), [_row(1, "2026-03-04T08:00")])
    assert _local(plan.until_utc) == "Tue 03-10 00:00"
    assert plan.days == 5
    assert [_local(m.due_utc) for m in plan.moves] == ["Wed 03-11 09:00"]


def test_an_overdue_step_never_lands_before_the_resume_day() -> None:
    plan = plan_pause(CADENCE, _message(None), [_row(1, "2026-02-20T08:00")])
    assert plan.moves[0].due_utc == plan.until_utc


def test_mailbox_url_with_an_address_as_user() -> None:
    box = parse_mailbox("imaps://dana@acme.example@imap.gmail.com:993/INBOX")
    assert (box.user, box.host, box.port, box.folder, box.tls) == (
        "dana@acme.example", "imap.gmail.com", 993, "INBOX", True,
    )  # fmt: skip
    assert parse_mailbox("imap://dana%40acme.example@host/Sales/Leads").port == 143


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("pop3://dana@host/INBOX", "imaps://"),
        ("imaps://host/INBOX", "give the user"),
        ("imaps://dana:s3cret@host/INBOX", "a password does not belong"),
        ("imaps://dana@host:notaport/INBOX", "not a mailbox URL"),
    ],
)
def test_bad_mailbox_urls(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        parse_mailbox(url)
    assert "s3cret" not in str(caught.value)
