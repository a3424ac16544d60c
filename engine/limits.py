"""Every bound on hostile input, in one place (README "Limits" lists them).

Contact lists come from CRMs and cadence files from pull requests: neither may decide
how long a command takes or how much memory it uses. Each limit is checked before the
expensive work it protects, and breaking one is a finding (file:line:col), a row error
or a per-contact render error — never an internal error.
"""

from __future__ import annotations

# Rendering (engine.templates): per template, per contact.
MAX_SUBJECT_CHARS = 1_000  # a rendered subject
MAX_BODY_CHARS = 1_000_000  # a rendered body, task notes or title
MAX_RENDER_STEPS = 100_000  # loop iterations plus calls in one render
MAX_RENDER_SECONDS = 2.0  # wall time of one render
MAX_INT_DIGITS = 1_000  # an integer a template computes (10 ** 10 ** 8 is refused)

# Cadence files (engine.loader, engine.validate).
MAX_CADENCE_BYTES = 1_048_576  # one cadence file
MAX_NESTING = 64  # mappings and lists inside each other (cadence files, contact rows)
MAX_NUMBER_CHARS = 50  # digits of a number literal
MAX_COLLECTION_ITEMS = 10_000  # entries of one mapping or list in a cadence file
MAX_CAMPAIGN_DAY = 1_000  # a step's `day` (the schema's maximum says the same)

# Contact lists (engine.contact_sources).
MAX_COLUMNS = 1_000  # columns of a CSV header, or fields of one record
MAX_FIELD_CHARS = 10_000  # one field value
MAX_RECORD_BYTES = 1_048_576  # one JSONL line, or one element of a JSON array
