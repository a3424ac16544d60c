"""The auto-reply pause rule and mailbox URLs: pure parts of the inbound package."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from cadence_engine.engine.errors import UsageError
from cadence_engine.engine.inbound.imap import parse_mailbox
from cadence_engine.engine.inbound.pause import pause_until
from tests.helpers.mail import stepless_cadence

CADENCE = stepless_cadence(skip_weekends=True, default_timezone="Europe/Amsterdam")
ZONE = "Europe/Amsterdam"
TUESDAY_NOON = int(datetime(2026, 3, 3, 11, tzinfo=UTC).timestamp())  # 12:00 in Amsterdam


def _local(seconds: int) -> str:
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(seconds, ZoneInfo(ZONE)).strftime("%a %m-%d %H:%M")


def test_back_on_friday_resumes_on_monday_at_midnight() -> None:
    found = pause_until(CADENCE, ZONE, TUESDAY_NOON, date(2026, 3, 6))
    assert found is not None
    assert _local(found.until_utc) == "Mon 03-09 00:00"
    assert found.resume == date(2026, 3, 9) and found.why == "back 2026-03-06"


def test_no_return_date_pauses_five_campaign_days() -> None:
    found = pause_until(CADENCE, ZONE, TUESDAY_NOON, None)
    assert found is not None
    assert _local(found.until_utc) == "Tue 03-10 00:00"
    assert "5 campaign days" in found.why


@pytest.mark.parametrize("back", [date(2026, 3, 2), date(2026, 2, 20)], ids=["yesterday", "past"])
def test_a_return_date_already_past_pauses_nothing(back: date) -> None:
    assert pause_until(CADENCE, ZONE, TUESDAY_NOON, back) is None


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
