"""What changes for contacts between two versions of a cadence (for a pull-request review).

Compares step by step (by id), then the consequences the rules draw from the new order
(R2 time references, R3 follow-ups, R5 holds), then each step's time of day in a
reference launch, so a reviewer sees what moves, what breaks and why. Name and
description are not part of the plan; changing only them is "no change for contacts".
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from .findings import with_article
from .model import Cadence, SendKind, Settings, Step
from .plan import Action
from .schedule import Slot, action_of, same_time_reference
from .versions import Version, load_version

__all__ = [
    "CATEGORIES",
    "CadenceDiff",
    "Change",
    "Version",
    "diff_cadences",
    "diff_versions",
    "load_version",
    "settings_changes",
]

# Categories, in report order: headings for text and Markdown output.
CATEGORIES = {
    "rule": "Rule consequences",
    "steps": "Steps",
    "send": "Send options and times",
    "thread": "Follow-up threads",
    "task": "Tasks",
    "template": "Templates",
    "settings": "Settings",
}
REFERENCE_START = datetime(2030, 1, 7, 0, 0, tzinfo=UTC)  # a Monday, far from any holiday


@dataclass(frozen=True, slots=True)
class Change:
    category: str
    step: str | None
    message: str
    detail: str = ""  # a unified diff (templates, notes)


@dataclass(frozen=True, slots=True)
class CadenceDiff:
    old: Cadence
    new: Cadence
    old_label: str
    new_label: str
    changes: tuple[Change, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def diff_versions(old: Version, new: Version) -> CadenceDiff:
    """Diff two loaded versions; the new version's rule errors are rule consequences."""
    result = diff_cadences(old.cadence, new.cadence, old_label=old.label, new_label=new.label)
    broken = tuple(
        Change("rule", None, f"{new.label} no longer validates: {e}") for e in new.errors
    )
    return CadenceDiff(
        result.old, result.new, result.old_label, result.new_label, broken + result.changes
    )


def diff_cadences(
    old: Cadence, new: Cadence, *, old_label: str = "old", new_label: str = "new"
) -> CadenceDiff:
    changes: list[Change] = []
    old_steps = {s.id: s for s in old.steps}
    new_steps = {s.id: s for s in new.steps}
    for step in new.steps:
        if step.id not in old_steps:
            changes.append(Change("steps", step.id, f"{step.id} added: {_describe(step)}"))
    for step in old.steps:
        if step.id not in new_steps:
            changes.append(Change("steps", step.id, f"{step.id} removed (was {_describe(step)})"))
    common = [s.id for s in new.steps if s.id in old_steps]
    old_order = [s.id for s in old.steps if s.id in new_steps]
    if common != old_order:
        changes.append(
            Change("steps", None, f"order changed: {', '.join(old_order)} → {', '.join(common)}")
        )
    old_times, new_times = _reference_times(old), _reference_times(new)
    for step_id in common:
        changes += _step_changes(
            old, new, old_steps[step_id], new_steps[step_id], old_times, new_times
        )
    changes += _template_changes(old, new)
    changes += settings_changes(old, new)
    order = list(CATEGORIES)
    changes.sort(key=lambda c: order.index(c.category))
    return CadenceDiff(old, new, old_label, new_label, tuple(changes))


def _describe(step: Step) -> str:
    text = f"day {step.day}, {action_of(step)}"
    if step.email is not None and step.email.send.kind is not SendKind.TASK:
        text += f" ({_send(step)})"
    return text


def _send(step: Step) -> str:
    assert step.email is not None
    send = step.email.send
    return f"at {send.at:%H:%M}" if send.at else send.kind.value.replace("_", " ")


def _reference_times(cadence: Cadence) -> dict[str, Slot]:
    """Each step's slot for a sample contact in a reference launch (times, holds, threads)."""
    from .compiler import Launch, Scheduler
    from .contacts import Contact
    from .when import SendAt

    needs = any(s.email and s.email.send.kind is SendKind.CHOOSE_AT_LAUNCH for s in cadence.steps)
    launch = Launch(REFERENCE_START, SendAt(time_of_day=time(9, 0)) if needs else None)
    schedule = Scheduler(cadence, launch).schedule(Contact("x@example.com", {}, None, 0))
    return {slot.step.id: slot for slot in schedule.slots}


def _held_by(slot: Slot) -> str | None:
    return next((d.step_id for d in slot.depends_on if d.kind.value == "task"), None)


def _step_changes(
    old_cad: Cadence,
    new_cad: Cadence,
    old: Step,
    new: Step,
    old_times: dict[str, Slot],
    new_times: dict[str, Slot],
) -> list[Change]:
    sid = new.id
    out: list[Change] = []
    if action_of(old) is not action_of(new):
        now, was = _action_phrase(action_of(new)), _action_phrase(action_of(old))
        out.append(Change("steps", sid, f"{sid} is now {now} (was {was})"))
    if old.day != new.day:
        out.append(Change("steps", sid, f"{sid} moved from day {old.day} to day {new.day}"))
    if old.email is not None and new.email is not None:
        if old.email.send != new.email.send:
            out.append(Change("send", sid, f"{sid}: send option {_send(old)} → {_send(new)}"))
        out += _thread_changes(old_cad, new_cad, old, new)
        old_ref, new_ref = same_time_reference(old_cad, old), same_time_reference(new_cad, new)
        both_same_time = (
            SendKind.SAME_TIME_AS_PREVIOUS is old.email.send.kind is new.email.send.kind
        )
        if both_same_time and (old_ref and old_ref.id) != (new_ref and new_ref.id):
            was = old_ref.id if old_ref else "the launch time"
            now = new_ref.id if new_ref else "the launch time"
            out.append(Change("rule", sid, f"{sid} now takes its time from {now} (was {was}), R2"))
    if (old.notes, old.title, old.at) != (new.notes, new.title, new.at):
        detail = _unified(f"{sid} notes", old.notes or "", new.notes or "")
        fields = [
            n
            for n, a, b in (
                ("notes", old.notes, new.notes),
                ("title", old.title, new.title),
                ("time", old.at, new.at),
            )
            if a != b
        ]
        out.append(Change("task", sid, f"{sid}: {', '.join(fields)} changed", detail))
    o, n = old_times[sid], new_times[sid]
    same_option = old.email is None or new.email is None or old.email.send == new.email.send
    if o.due_local.time() != n.due_local.time() and old.day == new.day and same_option:
        why = f" ({n.moved})" if n.moved else ""
        out.append(
            Change(
                "send",
                sid,
                f"{sid} now due at {n.due_local:%H:%M}{why}, was "
                f"{o.due_local:%H:%M} (contact's local time)",
            )
        )
    if _held_by(o) != _held_by(n):
        now_held = (
            f"is now held until task {_held_by(n)} is done"
            if _held_by(n)
            else "is no longer held by a task"
        )
        out.append(Change("rule", sid, f"{sid} {now_held} (R5)"))
    if {d.step_id for d in o.depends_on if d.kind.value == "sent-time"} != {
        d.step_id for d in n.depends_on if d.kind.value == "sent-time"
    }:
        waits = [d.step_id for d in n.depends_on if d.kind.value == "sent-time"]
        what = (
            f"now waits for the real send time of {', '.join(waits)}"
            if waits
            else ("no longer waits for a hand-sent email's time")
        )
        out.append(Change("rule", sid, f"{sid} {what} (R4)"))
    return out


def _thread_changes(old_cad: Cadence, new_cad: Cadence, old: Step, new: Step) -> list[Change]:
    assert old.email is not None and new.email is not None
    sid = new.id
    old_prev, new_prev = old_cad.previous_email(old), new_cad.previous_email(new)
    was = old.email.follow_up and old_prev is not None
    now = new.email.follow_up and new_prev is not None
    out: list[Change] = []
    if new.email.follow_up and new_prev is None and was:
        before = new_cad.steps[new.index - 1] if new.index else None
        what = (
            f"{with_article(before.kind.value)} ({before.id})"
            if before
            else "nothing (it is first)"
        )
        out.append(
            Change(
                "rule",
                sid,
                f"{sid} now follows {what}, so it can no longer be a "
                "follow-up (R3): its thread with "
                f"{old_prev.id if old_prev else '?'} breaks",
            )
        )
    elif was and not now:
        out.append(
            Change(
                "thread",
                sid,
                f"{sid} is no longer a follow-up to "
                f"{old_prev.id if old_prev else '?'}: it starts a new thread",
            )
        )
    elif now and not was:
        out.append(
            Change(
                "thread",
                sid,
                f"{sid} is now a follow-up to "
                f"{new_prev.id if new_prev else '?'}: sent as a reply, quoting it",
            )
        )
    elif was and now and old_prev and new_prev and old_prev.id != new_prev.id:
        out.append(Change("thread", sid, f"{sid} now replies to {new_prev.id} (was {old_prev.id})"))
    return out


def _template_changes(old: Cadence, new: Cadence) -> list[Change]:
    out: list[Change] = []
    for step in new.steps:
        before = next((s for s in old.steps if s.id == step.id), None)
        if step.email is None or before is None or before.email is None:
            continue
        a, b = old.templates.get(before.email.template), new.templates.get(step.email.template)
        text_a = f"Subject: {a.subject or '(Re: previous)'}\n\n{a.body}" if a else ""
        text_b = f"Subject: {b.subject or '(Re: previous)'}\n\n{b.body}" if b else ""
        if text_a != text_b:
            label = step.email.template
            if before.email.template != step.email.template:
                label = f"{before.email.template} → {step.email.template}"
            out.append(
                Change(
                    "template",
                    step.id,
                    f"{step.id}: template {label} changed",
                    _unified(step.id, text_a, text_b),
                )
            )
    return out


def _unified(name: str, a: str, b: str) -> str:
    lines = difflib.unified_diff(
        a.splitlines(), b.splitlines(), f"old/{name}", f"new/{name}", n=1, lineterm=""
    )
    return "\n".join(lines)


def settings_changes(old: Cadence, new: Cadence) -> list[Change]:
    """Settings and sender changes: each touches every contact's schedule or emails."""
    a, b = old.settings, new.settings
    pairs = [
        (
            "sender",
            f"{old.sender.name} <{old.sender.email}>",
            f"{new.sender.name} <{new.sender.email}>",
            "every email's From changes",
        ),
        ("skip_weekends", a.skip_weekends, b.skip_weekends, "campaign days are counted anew"),
        ("holidays", _dates(a.holidays), _dates(b.holidays), "campaign days are counted anew"),
        ("timezone", a.timezone, b.timezone, "local times are read in another zone"),
        (
            "default_timezone",
            a.default_timezone,
            b.default_timezone,
            "contacts without a zone move",
        ),
        ("send_window", _window(a), _window(b), "automatic emails may move to another opening"),
        ("daily_limit", a.daily_limit, b.daily_limit, "emails over the limit move on"),
        ("on_reply", _reply(a), _reply(b), "what a reply does changes"),
        ("remove_on_bounce", a.remove_on_bounce, b.remove_on_bounce, "bounce handling changes"),
        ("on_auto_reply", a.on_auto_reply, b.on_auto_reply, "auto-reply handling changes"),
    ]
    return [
        Change("settings", None, f"{name}: {_shown(x)} → {_shown(y)}: {why}")
        for name, x, y, why in pairs
        if x != y
    ]


def _shown(value: object) -> str:
    """A setting's value as the cadence file spells it (`true`, not Python's `True`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def _action_phrase(action: Action) -> str:
    return "an automatic email" if action is Action.SEND_EMAIL else with_article(action.value)


def _dates(days: frozenset[date]) -> str:
    return ", ".join(d.isoformat() for d in sorted(days)) or "none"


def _window(settings: Settings) -> str:
    w = settings.send_window
    return f"{w.start:%H:%M}–{w.end:%H:%M}" if w else "none"


def _reply(settings: Settings) -> str:
    r = settings.on_reply
    return f"end {str(r.end).lower()}, mark_success {str(r.mark_success).lower()}"
