"""The plan: the compiled, deterministic list of (contact, step, due time, action)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, NamedTuple


class Action(enum.StrEnum):
    SEND_EMAIL = "send email"
    EMAIL_TASK = "email task"
    CALL_TASK = "call task"
    INMAIL_TASK = "inmail task"
    CUSTOM_TASK = "custom task"


class DependencyKind(enum.StrEnum):
    TASK = "task"  # held until that task is done or skipped (R5)
    SENT_TIME = "sent-time"  # its time is that email's actual send time (R4)


class Dependency(NamedTuple):
    kind: DependencyKind
    step_id: str


class PlannedStep(NamedTuple):
    """One row of a plan: what happens to one contact at one step, and when.

    `due_utc` is the instant in UTC; `due_local` is the same instant in the contact's
    scheduling zone `zone`. `moved` says why the time differs from the intended one
    (e.g. "send window", "daily limit", "after previous step"), else None.
    `thread_step_id` is the step a follow-up replies to (R3).
    """

    contact: str
    step_id: str
    step_index: int
    day: int
    action: Action
    due_utc: datetime
    due_local: datetime
    zone: str
    depends_on: tuple[Dependency, ...] = ()
    thread_step_id: str | None = None
    moved: str | None = None
    subject: str | None = None
    body: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "contact": self.contact,
            "step": self.step_id,
            "day": self.day,
            "action": str(self.action),
            "due_local": self.due_local.isoformat(),
            "due_utc": self.due_utc.isoformat().replace("+00:00", "Z"),
            "zone": self.zone,
            "depends_on": [f"{d.kind}:{d.step_id}" for d in self.depends_on],
            "thread": self.thread_step_id,
            "moved": self.moved,
            **({"subject": self.subject, "body": self.body} if self.subject is not None else {}),
        }
