from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from cadence_engine.engine.loader import load_data
from cadence_engine.engine.model import Cadence, SendKind, StepKind

from .conftest import CADENCES


def test_example_cadence_builds_with_settings(example_cadence_path: Path) -> None:
    cadence = Cadence.from_data(load_data(example_cadence_path))
    assert cadence.settings.holidays == frozenset({date(2026, 12, 25), date(2027, 1, 1)})
    assert cadence.settings.send_window is not None
    assert cadence.settings.send_window.start == time(8, 0)
    assert [s.kind for s in cadence.steps][:3] == [StepKind.EMAIL, StepKind.CALL, StepKind.EMAIL]
    bump2 = cadence.step("bump-2")
    assert bump2.email is not None and bump2.email.follow_up
    assert bump2.email.send.kind is SendKind.AT and bump2.email.send.at == time(14, 0)
    assert cadence.previous_email(bump2) == cadence.step("bump")
    assert cadence.previous_email(cadence.step("bump")) is None


def test_defaults_follow_spec_section_5() -> None:
    cadence = Cadence.from_data(
        {
            "cadence": 1,
            "name": "n",
            "sender": {"name": "a", "email": "a@b.example"},
            "templates": {"t": {"subject": "s", "body": "b"}},
            "steps": [{"id": "a", "day": 1, "email": {"template": "t", "send": "task"}}],
        }
    )
    s = cadence.settings
    assert (s.skip_weekends, s.timezone, s.remove_on_bounce, s.on_reply.end) == (
        True,
        "contact",
        True,
        True,
    )
    assert s.send_window is None and s.daily_limit is None


@pytest.mark.parametrize("path", sorted(CADENCES.glob("*.yaml")), ids=lambda p: p.name)
def test_content_hash_ignores_comments(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / path.name
    copy.write_text("# a new comment\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    assert Cadence.from_data(load_data(copy)).content_hash == (
        Cadence.from_data(load_data(path)).content_hash
    )
