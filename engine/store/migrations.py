"""The one schema of the SQLite state store, as numbered migrations.

Migration N brings the store from schema version N-1 to N; the version lives in
`PRAGMA user_version`, so it moves in the same transaction as the DDL. Never edit a released
migration: add the next number.

Times are integer seconds since the epoch, UTC: comparisons in the claim query stay cheap and
every process agrees on them. Leases (`lease_until`) are wall-clock seconds of the machine
that took them, independent of a runner's `--now`, so a crash is detected by real time passing.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
CREATE TABLE cadence_versions (
    hash        TEXT PRIMARY KEY,          -- Cadence.content_hash: enrolments are pinned to it
    name        TEXT NOT NULL,
    source      TEXT NOT NULL,             -- the YAML text as launched, kept for audits
    data        TEXT NOT NULL,             -- Cadence.data as JSON, rebuilt with from_data
    created_utc INTEGER NOT NULL
);

CREATE TABLE enrolments (
    id                INTEGER PRIMARY KEY,
    uid               TEXT NOT NULL UNIQUE,   -- stable across stores; feeds the Message-ID
    cadence_name      TEXT NOT NULL,
    cadence_hash      TEXT NOT NULL REFERENCES cadence_versions(hash),
    email             TEXT NOT NULL,          -- lower-cased address
    contact           TEXT NOT NULL,          -- the contact row as JSON
    unsubscribe_token TEXT NOT NULL UNIQUE,
    state             TEXT NOT NULL DEFAULT 'active',
        -- active | completed | replied | bounced | unsubscribed
    success           INTEGER NOT NULL DEFAULT 0,
    launched_utc      INTEGER NOT NULL,
    ended_utc         INTEGER
);
-- "Launching the same contact into the same cadence while enrolled is skipped": the
-- database, not the launcher, is what makes that true under concurrent launches.
CREATE UNIQUE INDEX enrolments_one_active ON enrolments(cadence_name, email)
    WHERE state = 'active';
CREATE INDEX enrolments_email ON enrolments(email);

CREATE TABLE step_runs (
    id             INTEGER PRIMARY KEY,
    enrolment_id   INTEGER NOT NULL REFERENCES enrolments(id),
    step_id        TEXT NOT NULL,
    step_index     INTEGER NOT NULL,
    day            INTEGER NOT NULL,
    action         TEXT NOT NULL,          -- engine.plan.Action value
    zone           TEXT NOT NULL,          -- the contact's scheduling zone
    due_utc        INTEGER NOT NULL,       -- when it may run (moves: window, retry, R4, R5)
    planned_utc    INTEGER NOT NULL,       -- the plan's time, for reports
    depends_on     TEXT NOT NULL DEFAULT '',  -- "kind:step,kind:step" from the plan
    thread_step_id TEXT,
    message_id     TEXT,
    state          TEXT NOT NULL DEFAULT 'planned',
        -- planned | claimed | sending | sent | unknown | failed | open | done | skipped
        -- | cancelled
    fence          INTEGER,                -- token of the claim that owns the row
    lease_until    REAL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    sent_utc       INTEGER,
    done_utc       INTEGER,
    by_hand        INTEGER NOT NULL DEFAULT 0,  -- a rep scheduled/sent it (tasks send)
    subject        TEXT,                   -- a rep's edits: sent, never quoted (R3)
    body           TEXT,
    answer         TEXT,                   -- last server answer or reason
    UNIQUE (enrolment_id, step_id)
);
CREATE INDEX step_runs_due ON step_runs(state, due_utc);
CREATE INDEX step_runs_order ON step_runs(enrolment_id, step_index);
CREATE INDEX step_runs_fence ON step_runs(fence);

CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    at_utc       INTEGER NOT NULL,
    kind         TEXT NOT NULL,
        -- launched | sent | task created | task done | task skipped | reply | bounce
        -- | unsubscribe | rescheduled | retry | failed | cancelled | unknown | resolved
    email        TEXT,
    enrolment_id INTEGER,
    step_run_id  INTEGER,
    detail       TEXT
);
CREATE INDEX events_step ON events(step_run_id);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

-- Bounced and unsubscribed addresses: suppressed for every cadence (SPEC §7).
CREATE TABLE suppressions (
    email  TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    at_utc INTEGER NOT NULL
);

-- Signals seen, so recording the same one twice is a no-op.
CREATE TABLE signals (
    kind         TEXT NOT NULL,
    email        TEXT NOT NULL,
    cadence_name TEXT NOT NULL DEFAULT '',
    at_utc       INTEGER NOT NULL,
    PRIMARY KEY (kind, email, cadence_name)
);

-- One counter hands out fencing tokens: strictly increasing across all runners.
CREATE TABLE fences (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
INSERT INTO fences VALUES (1, 0);

-- Automatic emails claimed per sender per local day (daily_limit at run time).
CREATE TABLE sender_days (
    sender TEXT NOT NULL,
    day    TEXT NOT NULL,
    sent   INTEGER NOT NULL,
    PRIMARY KEY (sender, day)
);
""",
    ),
    (
        2,
        # Inbound mail (SPEC §8): mailbox cursors, messages handled once, auto-reply pauses,
        # and where each event came from.
        """
CREATE TABLE inbox_cursors (
    mailbox     TEXT PRIMARY KEY,          -- the mailbox URL without its password
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,          -- the highest UID handled
    since_utc   INTEGER NOT NULL,          -- INTERNALDATE of the newest message handled
    updated_utc INTEGER NOT NULL
);

-- One row per message ever handled, by its dedupe key: acted on once however often read.
CREATE TABLE inbox_messages (
    dedupe_key   TEXT PRIMARY KEY,
    mailbox      TEXT NOT NULL,
    uid          INTEGER NOT NULL,
    kind         TEXT NOT NULL,   -- reply | auto-reply | bounce | delayed | unsubscribe
                                  -- | ignored | own
    email        TEXT,
    enrolment_id INTEGER,
    detail       TEXT NOT NULL DEFAULT '',
    at_utc       INTEGER NOT NULL
);

-- Auto-reply pauses: the enrolment's planned steps were shifted to resume at until_utc.
CREATE TABLE pauses (
    id           INTEGER PRIMARY KEY,
    enrolment_id INTEGER NOT NULL REFERENCES enrolments(id),
    from_utc     INTEGER NOT NULL,
    until_utc    INTEGER NOT NULL,
    days         INTEGER NOT NULL,        -- campaign days the schedule moved
    reason       TEXT NOT NULL,
    source       TEXT NOT NULL
);
CREATE INDEX pauses_enrolment ON pauses(enrolment_id, until_utc);

CREATE INDEX step_runs_message ON step_runs(message_id);
CREATE INDEX enrolments_token_lower ON enrolments(lower(unsubscribe_token));

-- mailbox URL + "#uid=N", "web", "command"; NULL for events that are not signals.
ALTER TABLE events ADD COLUMN source TEXT;
""",
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]
