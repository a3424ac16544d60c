"""Build small cadences in tests without writing YAML files."""

from __future__ import annotations

from typing import Any

from cadence_engine.engine.model import Cadence

TEMPLATES = {
    "a": {"subject": "Hello {{ contact.first_name | default('there') }}", "body": "Body A\n"},
    "b": {"subject": "Second", "body": "Body B for {{ contact.company }}\n"},
    "c": {"body": "Body C\n"},
}


def make_cadence(
    steps: list[dict[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
    templates: dict[str, Any] | None = None,
) -> Cadence:
    """A valid cadence with the given steps (default: one email at 10:00 on day 1)."""
    return Cadence.from_data(
        {
            "cadence": 1,
            "name": "Test cadence",
            "sender": {"name": "Dana Reyes", "email": "dana@acme.example"},
            "settings": {"default_timezone": "UTC", **(settings or {})},
            "templates": templates or TEMPLATES,
            "steps": steps
            or [{"id": "first", "day": 1, "email": {"template": "a", "send": {"at": "10:00"}}}],
        }
    )


def email(
    step_id: str, day: int, send: Any, template: str = "a", follow_up: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {"template": template, "send": send}
    if follow_up:
        body["follow_up"] = True
    return {"id": step_id, "day": day, "email": body}


def task(step_id: str, day: int, kind: str = "call", **body: Any) -> dict[str, Any]:
    return {"id": step_id, "day": day, kind: body}
