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
    # The store contract (issue 9): pauses, signal sources, inbound cursors and dedupe,
    # Message-ID lookup, and one active-or-paused enrolment per cadence and address.
    (
        2,
        """
ALTER TABLE enrolments ADD COLUMN paused_utc INTEGER;     -- when the current pause began
ALTER TABLE enrolments ADD COLUMN paused_until INTEGER;   -- when it ends by itself (auto-reply)
DROP INDEX enrolments_one_active;
CREATE UNIQUE INDEX enrolments_one_running ON enrolments(cadence_name, email)
    WHERE state IN ('active', 'paused');
ALTER TABLE events ADD COLUMN source TEXT;                -- command | web | mailbox URL uid N
CREATE INDEX events_email ON events(email);
CREATE INDEX step_runs_message_id ON step_runs(message_id);
CREATE TABLE mailbox_cursors (
    mailbox     TEXT PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL
);
CREATE TABLE inbound_seen (
    key     TEXT PRIMARY KEY,                 -- an inbound message's dedupe key
    mailbox TEXT NOT NULL,
    at_utc  INTEGER NOT NULL
);
""",
    ),
    (
        # Command Center (SPEC §9): who may sign in, one-time links, sessions; upcoming tasks.
        3,
        """
CREATE TABLE users (
    id       INTEGER PRIMARY KEY,
    email    TEXT NOT NULL UNIQUE,       -- lower-cased; a rep works cadences whose sender it is
    name     TEXT NOT NULL DEFAULT '',
    admin    INTEGER NOT NULL DEFAULT 0, -- sees and works every cadence's tasks
    timezone TEXT NOT NULL DEFAULT 'UTC',
    created_utc INTEGER NOT NULL
);

-- Only a SHA-256 of each secret is kept: a copy of the database signs nobody in.
CREATE TABLE sign_in_tokens (
    token_hash  TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_utc INTEGER NOT NULL,
    used_utc    INTEGER                  -- set once, when the link is used
);

CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf        TEXT NOT NULL,           -- the token every form of this session carries
    created_utc INTEGER NOT NULL,
    expires_utc INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

-- The queue's "upcoming": planned task steps by time. Partial, so the runner's email rows
-- never enter it (no cost to sending) and the query never scans due emails.
CREATE INDEX step_runs_planned_tasks ON step_runs(due_utc)
    WHERE state = 'planned' AND action != 'send email';
""",
    ),
    (
        # The fence index served one query, giving a claim's leftovers back (`release`),
        # which finds its rows as well through `step_runs_due` (few rows are `claimed`).
        # Every claim wrote into it and every record out of it: the 10,000-email run
        # measured 6.01 G instructions with it, 5.92 G without.
        4,
        """
DROP INDEX step_runs_fence;
""",
    ),
    (
        # The contact page shows the thread as sent: the one input of an email's text the
        # store did not keep is the unsubscribe link, which the runner's environment
        # chose (CADENCE_UNSUBSCRIBE_URL, CADENCE_BASE_URL). Kept instead of the whole
        # text: a URL a row, not a copy of every body.
        5,
        """
ALTER TABLE step_runs ADD COLUMN unsubscribe_url TEXT;  -- the link a sent email carried
""",
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]
