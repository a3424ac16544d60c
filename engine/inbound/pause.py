"""The auto-reply pause (SPEC §8): how long, and how the rest of the schedule moves.

One engine rule, used inside the store's recording transaction: the contact resumes on the
day after the return date the auto-reply names (within 60 days), else after 5 campaign
days; every planned step moves on by the pause's length in campaign days, its wall time
kept, as a late task moves them (R5), and never to before the resume day.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from engine.calendar import campaign_days_between, resolve_local, shift_campaign_days, zone
from engine.inbound.store import Handled, PausePlan
from engine.model import Cadence
from engine.store import Move, StepRow

DEFAULT_PAUSE_DAYS = 5


def plan_pause(cadence: Cadence, message: Handled, planned: list[StepRow]) -> PausePlan:
    """The pause an auto-reply received at `message.received_utc` puts on `planned` steps."""
    settings = cadence.settings
    tz = zone(planned[0].zone if planned else settings.default_timezone)
    today = datetime.fromtimestamp(message.received_utc, UTC).astimezone(tz).date()
    if message.return_date is not None:
        resume = shift_campaign_days(settings, message.return_date + timedelta(days=1), 0)
        why = f"back {message.return_date.isoformat()}"
    else:
        resume = shift_campaign_days(settings, today, DEFAULT_PAUSE_DAYS)
        why = f"{DEFAULT_PAUSE_DAYS} campaign days, no return date found"
    days = campaign_days_between(settings, today, resume)
    until = resolve_local(resume, time(0, 0), tz)
    moves: list[Move] = []
    for row in planned:
        due = _shifted(cadence, row.due_utc, days, row.zone)
        moves.append(
            Move(
                row.id,
                row.step_id,
                max(due, int(until.timestamp())),
                _shifted(cadence, row.planned_utc, days, row.zone),
                "after auto-reply pause",
            )
        )
    return PausePlan(
        until_utc=int(until.timestamp()),
        days=days,
        moves=tuple(moves),
        detail=f"{message.detail}: paused until {resume.isoformat()} ({why})",
    )


def _shifted(cadence: Cadence, instant: int, days: int, zone_name: str) -> int:
    tz = zone(zone_name)
    local = datetime.fromtimestamp(instant, UTC).astimezone(tz)
    day = shift_campaign_days(cadence.settings, local.date(), days)
    return int(resolve_local(day, local.time().replace(tzinfo=None), tz).timestamp())
