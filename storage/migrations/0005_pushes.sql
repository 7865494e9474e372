-- Pushes and daily jobs (DESIGN.md "Scheduler and pushes"). Times are Unix seconds (UTC).

-- What a member told us in /settings, and whether Telegram still lets us reach them.
-- birthday_entered_at is the latest time a birthday was set or changed: a birthday entered
-- shortly before the date earns no gift that year; birthday_changes counts changes after
-- the first entry (one change a year).
ALTER TABLE members ADD COLUMN birthday_month INTEGER
    CHECK (birthday_month IS NULL OR birthday_month BETWEEN 1 AND 12);
ALTER TABLE members ADD COLUMN birthday_day INTEGER
    CHECK (birthday_day IS NULL OR birthday_day BETWEEN 1 AND 31);
ALTER TABLE members ADD COLUMN birthday_year INTEGER;
ALTER TABLE members ADD COLUMN birthday_entered_at INTEGER;
ALTER TABLE members ADD COLUMN birthday_changed_at INTEGER;
ALTER TABLE members ADD COLUMN marketing_opt_in INTEGER NOT NULL DEFAULT 1;
ALTER TABLE members ADD COLUMN reachable INTEGER NOT NULL DEFAULT 1;

CREATE INDEX members_by_birthday ON members (birthday_month, birthday_day)
    WHERE birthday_month IS NOT NULL;

-- Every push goes through here. dedupe_key makes a job that runs twice (a restart, a
-- catch-up) enqueue nothing new. The text is rendered when it is sent, in the member's
-- language of that moment, from message_key and params.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY,
    dedupe_key  TEXT    NOT NULL UNIQUE,
    member_id   INTEGER NOT NULL REFERENCES members (id),
    category    TEXT    NOT NULL CHECK (category IN ('service', 'marketing')),
    message_key TEXT    NOT NULL,
    params      TEXT    NOT NULL CHECK (json_valid(params)),
    buttons     TEXT    CHECK (buttons IS NULL OR json_valid(buttons)),
    created_at  INTEGER NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'unreachable', 'skipped', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    sent_at     INTEGER,
    last_error  TEXT
) STRICT;

CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';

-- One row per daily job and local day it ran for: a restart or a catch-up never runs a
-- day's job twice, and a day missed while the bot was down is found at the next start.
CREATE TABLE job_runs (
    job         TEXT    NOT NULL,
    day         TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    summary     TEXT,
    PRIMARY KEY (job, day)
) STRICT;

-- Announced changes of the expiry policy: each applies to points earned from its local
-- day on, and is announced to every member at least the configured notice ahead.
CREATE TABLE policy_changes (
    id           INTEGER PRIMARY KEY,
    effective_on TEXT    NOT NULL UNIQUE,
    mode         TEXT    NOT NULL CHECK (mode IN ('rolling', 'year_end', 'never')),
    months       INTEGER NOT NULL,
    years        INTEGER NOT NULL,
    announced_at INTEGER NOT NULL,
    actor        TEXT    NOT NULL
) STRICT;

CREATE TRIGGER policy_changes_append_only_update BEFORE UPDATE ON policy_changes
BEGIN
    SELECT RAISE(ABORT, 'an announced policy change cannot be altered');
END;

CREATE TRIGGER policy_changes_append_only_delete BEFORE DELETE ON policy_changes
BEGIN
    SELECT RAISE(ABORT, 'an announced policy change cannot be withdrawn silently');
END;

-- An operator's broadcast: previewed first, enqueued once when confirmed.
CREATE TABLE broadcasts (
    id           INTEGER PRIMARY KEY,
    text         TEXT    NOT NULL,
    actor        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    confirmed_at INTEGER
) STRICT;
