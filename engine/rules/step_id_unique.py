"""Step ids are unique within a cadence.

The id names the step in plans, tasks, diffs and the state store, so two steps may not
share one. Rename one of them (and keep ids stable once contacts are enrolled).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import rule
from . import Issue, step_dicts

RULE = rule("step-id/unique", "Two steps have the same id.", __doc__ or "")


def check(steps: Any) -> Iterator[Issue]:
    seen: dict[str, int] = {}
    for index, step in step_dicts(steps):
        step_id = step.get("id")
        if not isinstance(step_id, str):
            continue
        if step_id in seen:
            yield Issue(
                RULE,
                f"step id '{step_id}' is already used by step {seen[step_id] + 1}; "
                "step ids are unique",
                (index, "id"),
            )
        else:
            seen[step_id] = index
