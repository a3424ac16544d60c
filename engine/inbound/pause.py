"""How long an auto-reply pauses a contact (SPEC §8): an engine rule, pure.

The contact resumes on the day after the return date the auto-reply names (within 60
days, as the classifier reads it), else after 5 campaign days, at midnight in the
contact's zone. The pause itself is the enrolments' pause machinery: the enrolment is
paused `until` that instant, the runner resumes it then (`engine.enrolments.resume_due`)
and its planned steps move by the campaign days the pause lasted, as R5 moves them
(`engine.policy.pause_moves`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from ..calendar import resolve_local, shift_campaign_days, zone
from ..model import Cadence

DEFAULT_PAUSE_DAYS = 5


@dataclass(frozen=True, slots=True)
class PauseUntil:
    until_utc: int  # when the pause ends by itself (midnight of the resume day)
    resume: date  # the resume day, in the contact's zone
    why: str  # how that day was chosen, for the event log


def pause_until(
    cadence: Cadence, zone_name: str, received_utc: int, return_date: date | None
) -> PauseUntil | None:
    """When an auto-reply received at `received_utc` ends its pause; None when that is
    not after the day it came (a return date already past: nothing to hold)."""
    settings = cadence.settings
    tz = zone(zone_name)
    today = datetime.fromtimestamp(received_utc, UTC).astimezone(tz).date()
    if return_date is not None:
        resume = shift_campaign_days(settings, return_date + timedelta(days=1), 0)
        why = f"back {return_date.isoformat()}"
    else:
        resume = shift_campaign_days(settings, today, DEFAULT_PAUSE_DAYS)
        why = f"{DEFAULT_PAUSE_DAYS} campaign days, no return date found"
    if resume <= today:
        return None
    until = resolve_local(resume, time(0, 0), tz)
    return PauseUntil(int(until.timestamp()), resume, why)
