"""Rules that standard JSON Schema keywords enforce.

A subschema of `schemas/cadence.schema.json` names its rule with `x-rule` (and its message
with `x-message`); failures of unlabelled keywords fall back to the generic `schema/*` rules.
A test checks that every `x-rule` in the schema is registered here.
"""

from __future__ import annotations

from ..findings import rule

UNKNOWN_KEY = rule(
    "schema/unknown-key",
    "A key that the cadence format does not know.",
    "Unknown keys are errors so that a typo never silently drops a setting. The message "
    "suggests the closest known key; `cadence schema` lists them all.",
)
REQUIRED_KEY = rule(
    "schema/required-key",
    "A required key is missing.",
    "The top level needs `cadence`, `name`, `sender` and `steps`; a step needs `id` and "
    "`day`; an email step needs `template` and `send`; a template needs `body`; a custom "
    "step needs `title`; `sender` needs `name` and `email`; `send_window` needs `start` and "
    "`end`.",
)
TYPE = rule(
    "schema/type",
    "A value has the wrong type.",
    "Each key takes one kind of value: text, a whole number, true/false, a list or a "
    "mapping. The message says what was expected.",
)
VALUE = rule(
    "schema/value",
    "A value is not one of the allowed values, or is out of range.",
    "The message names the allowed values or the limit (for example `daily_limit` is at "
    "least 1, `name` is not empty, list items are unique).",
)
VERSION = rule(
    "cadence/version",
    "The format version is not 1.",
    "Every cadence file starts with `cadence: 1`, the only format version so far.",
)
ONE_KIND = rule(
    "step/one-kind",
    "A step does not have exactly one of email, call, inmail, custom.",
    "Each step is one thing: an `email`, a `call`, a LinkedIn `inmail` or a `custom` task. "
    "Split a step that has two into two steps (they may share a day).",
)
STEP_ID = rule(
    "step-id/slug",
    "A step id is not a slug.",
    "Step ids are lowercase letters, digits and single dashes (`bump-2`). They name the "
    "step in plans, tasks and diffs, and must stay stable once contacts are enrolled.",
)
DAY = rule(
    "day/positive-integer",
    "A day is not a whole number from 1 to 1000.",
    "`day` is the absolute campaign day: `1` is the launch day, `3` the third campaign day "
    "(business days with `skip_weekends`).",
)
FIRST_DAY = rule(
    "day/first-step",
    "The first step is not on day 1.",
    "A cadence starts on its launch day: the first step in the list has `day: 1`.",
)
FIRST_SEND = rule(
    "send-option/first-step",
    "The first step uses a send option only later steps have.",
    "The first email of a cadence (R1) offers exactly `choose_at_launch`, "
    '`{at: "HH:MM"}` and `task`. `same_time_as_previous` needs an email before it.',
)
SEND_VALUE = rule(
    "send-option/value",
    "`send` is not a known send option.",
    '`send` is one of `choose_at_launch` (first step only), `{at: "HH:MM"}`, `task` or '
    "`same_time_as_previous` (not on the first step).",
)
TASK_AT = rule(
    "send-option/task-at",
    "`at` on an email step that is not an email task.",
    "An email step's own `at` is the due time of an email task (`send: task`), as on the "
    'other task steps. An automatic email takes its time from `send: {at: "HH:MM"}` (or '
    "`choose_at_launch`, `same_time_as_previous`).",
)
FIRST_FOLLOW_UP = rule(
    "follow-up/first-step",
    "The first step is a follow-up.",
    "A follow-up (R3) replies to the email directly before it; the first step has none. "
    "Remove `follow_up: true`.",
)
TIME = rule(
    "time/hhmm",
    "A time of day is not HH:MM.",
    'Times are 24-hour `"HH:MM"` strings, quoted: `"09:30"`, `"14:00"`. Unquoted '
    "they are still read as text, but quoting keeps every YAML tool agreeing.",
)
DATE = rule(
    "date/format",
    "A date is not a valid YYYY-MM-DD date.",
    "Holidays are calendar dates written `YYYY-MM-DD` (`2026-12-25`), and must exist.",
)
SENDER_EMAIL = rule(
    "sender/email",
    "The sender address is not an email address.",
    "`sender.email` is the From address, `name@domain.tld`, and one every message can carry:"
    " the check contact addresses get (no control or invisible character, a local part of at"
    " most 64 bytes, domain labels of at most 63).",
)
CONTACT_FIELD = rule(
    "contact-field/name",
    "A contact field name cannot be used in templates.",
    "Names in `contact_fields` are used as `contact.<name>` in templates, so they are "
    "letters, digits and underscores, not starting with a digit (`team_size`).",
)
INVALID = rule(
    "schema/invalid",
    "A value breaks a schema rule.",
    "A catch-all for schema failures without a more specific rule; the message says which.",
)
