"""`choose_at_launch` is only available on the first step.

"I will choose when I send this email" (R1) asks the launcher for a send time when
contacts are added, which only makes sense for the email that starts the cadence. Later
emails use `{at: "HH:MM"}`, `task` or `same_time_as_previous` (R2).

Standard JSON Schema says this (`unevaluatedItems` of `steps`, inlined for every step after the
first), so editors flag it too; this module only registers the rule.
"""

from __future__ import annotations

from ..findings import rule

RULE = rule(
    "send-option/later-step", "`choose_at_launch` on a step other than the first.", __doc__ or ""
)
