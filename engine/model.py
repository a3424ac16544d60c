"""The cadence as typed, immutable values, built from validated plain data.

`Cadence.from_data` assumes the data passed schema validation (engine.schema); it does
not re-check the rules, it only converts types and applies SPEC §5 defaults.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any

STANDARD_CONTACT_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "timezone",
    "phone",
    "linkedin_url",
)

DEFAULT_TIMEZONE = "UTC"
DEFAULT_TASK_TIME = time(9, 0)


class StepKind(enum.StrEnum):
    EMAIL = "email"
    CALL = "call"
    INMAIL = "inmail"
    CUSTOM = "custom"


class SendKind(enum.StrEnum):
    CHOOSE_AT_LAUNCH = "choose_at_launch"
    AT = "at"
    TASK = "task"
    SAME_TIME_AS_PREVIOUS = "same_time_as_previous"


def parse_hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


@dataclass(frozen=True, slots=True)
class SendOption:
    kind: SendKind
    at: time | None = None

    @classmethod
    def from_data(cls, data: Any) -> SendOption:
        if isinstance(data, dict):
            return cls(SendKind.AT, parse_hhmm(str(data["at"])))
        return cls(SendKind(data))


@dataclass(frozen=True, slots=True)
class Sender:
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class SendWindow:
    start: time
    end: time

    def contains(self, t: time) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class OnReply:
    end: bool = True
    mark_success: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    skip_weekends: bool = True
    holidays: frozenset[date] = frozenset()
    timezone: str = "contact"
    default_timezone: str = DEFAULT_TIMEZONE
    send_window: SendWindow | None = None
    daily_limit: int | None = None
    on_reply: OnReply = OnReply()
    remove_on_bounce: bool = True
    on_auto_reply: str = "pause"  # pause | ignore (SPEC §8)

    @classmethod
    def from_data(cls, data: dict[str, Any] | None) -> Settings:
        data = data or {}
        window = data.get("send_window")
        reply = data.get("on_reply") or {}
        return cls(
            skip_weekends=bool(data.get("skip_weekends", True)),
            holidays=frozenset(_as_date(d) for d in data.get("holidays") or ()),
            timezone=str(data.get("timezone", "contact")),
            default_timezone=str(data.get("default_timezone", DEFAULT_TIMEZONE)),
            send_window=(
                SendWindow(parse_hhmm(str(window["start"])), parse_hhmm(str(window["end"])))
                if window
                else None
            ),
            daily_limit=data.get("daily_limit"),
            on_reply=OnReply(
                end=bool(reply.get("end", True)),
                mark_success=bool(reply.get("mark_success", False)),
            ),
            remove_on_bounce=bool(data.get("remove_on_bounce", True)),
            on_auto_reply=str(data.get("on_auto_reply", "pause")),
        )


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    subject: str | None
    body: str


@dataclass(frozen=True, slots=True)
class EmailSpec:
    template: str
    send: SendOption
    follow_up: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """One step. `email` is set for email steps; `notes`/`title`/`at` for task steps."""

    id: str
    day: int
    kind: StepKind
    index: int
    email: EmailSpec | None = None
    notes: str | None = None
    title: str | None = None
    at: time | None = None

    @classmethod
    def from_data(cls, index: int, data: dict[str, Any]) -> Step:
        for kind in StepKind:
            if kind.value in data:
                body = data[kind.value] or {}
                break
        else:  # pragma: no cover - the schema guarantees exactly one kind
            raise ValueError(f"step {data.get('id')!r} has no step type")
        if kind is StepKind.EMAIL:
            return cls(
                id=str(data["id"]),
                day=int(data["day"]),
                kind=kind,
                index=index,
                email=EmailSpec(
                    template=str(body["template"]),
                    send=SendOption.from_data(body["send"]),
                    follow_up=bool(body.get("follow_up", False)),
                ),
                at=parse_hhmm(str(body["at"])) if body.get("at") else None,
            )
        return cls(
            id=str(data["id"]),
            day=int(data["day"]),
            kind=kind,
            index=index,
            notes=body.get("notes"),
            title=body.get("title"),
            at=parse_hhmm(str(body["at"])) if body.get("at") else None,
        )


@dataclass(frozen=True, slots=True)
class Cadence:
    name: str
    sender: Sender
    settings: Settings
    templates: dict[str, Template]
    steps: tuple[Step, ...]
    description: str = ""
    contact_fields: tuple[str, ...] = ()
    content_hash: str = ""
    source: str = ""
    data: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_data(cls, data: dict[str, Any], *, source: str = "") -> Cadence:
        sender = data.get("sender") or {}
        templates = {
            str(name): Template(str(name), t.get("subject"), str(t.get("body", "")))
            for name, t in (data.get("templates") or {}).items()
        }
        return cls(
            name=str(data["name"]),
            description=str(data.get("description") or ""),
            sender=Sender(str(sender.get("name", "")), str(sender.get("email", ""))),
            settings=Settings.from_data(data.get("settings")),
            templates=templates,
            steps=tuple(Step.from_data(i, s) for i, s in enumerate(data.get("steps") or ())),
            contact_fields=tuple(str(f) for f in data.get("contact_fields") or ()),
            content_hash=content_hash(data),
            source=source,
            data=data,
        )

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def previous_email(self, step: Step) -> Step | None:
        """The email step directly before `step` in file order (the R3 follow-up target)."""
        if step.index == 0:
            return None
        before = self.steps[step.index - 1]
        return before if before.kind is StepKind.EMAIL else None


def content_hash(data: dict[str, Any]) -> str:
    """A stable hash of the cadence's meaning (comments and layout do not change it)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
