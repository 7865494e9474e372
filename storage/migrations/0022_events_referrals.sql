-- Check-in events and referrals (issue 21, task kinds checkin and referral). Times are Unix
-- seconds (UTC).

-- An event staff create (/event_new) for members to check in at: a lecture, a pet check-up.
-- Members send its code (or open its QR deep link) within the window, once each, up to the
-- capacity when there is one.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    code       TEXT    NOT NULL UNIQUE CHECK (code GLOB '[A-Z2-9][A-Z2-9][A-Z2-9][A-Z2-9][A-Z2-9][A-Z2-9]'),
    name       TEXT    NOT NULL CHECK (length(trim(name)) BETWEEN 1 AND 60),
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    capacity   INTEGER CHECK (capacity IS NULL OR capacity > 0),
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    CHECK (ends_at > starts_at)
) STRICT;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are kept');
END;

-- One check-in per member per event. day is the local day it happened (for /event_stats);
-- task_id names the checkin task this check-in completed, if it completed one.
CREATE TABLE checkins (
    event_id      INTEGER NOT NULL REFERENCES events (id),
    member_id     INTEGER NOT NULL REFERENCES members (id),
    checked_in_at INTEGER NOT NULL,
    day           TEXT    NOT NULL,
    task_id       TEXT,
    PRIMARY KEY (event_id, member_id)
) STRICT, WITHOUT ROWID;

-- The window and the capacity hold whatever code writes the row.
CREATE TRIGGER checkins_in_window BEFORE INSERT ON checkins
WHEN NOT EXISTS (
    SELECT 1 FROM events
    WHERE id = NEW.event_id AND starts_at <= NEW.checked_in_at AND NEW.checked_in_at < ends_at
)
BEGIN
    SELECT RAISE(ABORT, 'check-in outside the event window');
END;

CREATE TRIGGER checkins_within_capacity BEFORE INSERT ON checkins
WHEN (SELECT capacity FROM events WHERE id = NEW.event_id) <=
     (SELECT count(*) FROM checkins WHERE event_id = NEW.event_id)
BEGIN
    SELECT RAISE(ABORT, 'event full');
END;

CREATE TRIGGER checkins_no_update BEFORE UPDATE ON checkins
BEGIN
    SELECT RAISE(ABORT, 'a check-in is final');
END;

CREATE TRIGGER checkins_no_delete BEFORE DELETE ON checkins
BEGIN
    SELECT RAISE(ABORT, 'a check-in is final');
END;

-- A friend who registered through a member's referral link (/start ref_<code>): one row per
-- friend ever. Their first purchase is recorded once (the operation that booked it); it
-- credits the referrer at most once (credited_at, and the local month it counts in against
-- the task's max_per_month) — a friend past the month's cap, or with no referral task open,
-- has their first purchase recorded and credits nothing.
CREATE TABLE referrals (
    referee_id        INTEGER PRIMARY KEY REFERENCES members (id),
    referrer_id       INTEGER NOT NULL REFERENCES members (id),
    started_at        INTEGER NOT NULL,
    first_purchase_op INTEGER UNIQUE REFERENCES operations (id),
    first_purchase_at INTEGER,
    credited_at       INTEGER,
    month             TEXT CHECK (month IS NULL OR month GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),
    CHECK (referee_id <> referrer_id),
    CHECK ((first_purchase_op IS NULL) = (first_purchase_at IS NULL)),
    CHECK ((credited_at IS NULL) = (month IS NULL)),
    CHECK (credited_at IS NULL OR first_purchase_op IS NOT NULL)
) STRICT;

-- A referrer's friends credited per month (the cap).
CREATE INDEX referrals_credited ON referrals (referrer_id, month) WHERE month IS NOT NULL;

-- Who referred whom never changes; a first purchase and a credit are recorded once.
CREATE TRIGGER referrals_settled_once BEFORE UPDATE ON referrals
WHEN NEW.referee_id IS NOT OLD.referee_id
    OR NEW.referrer_id IS NOT OLD.referrer_id
    OR NEW.started_at IS NOT OLD.started_at
    OR (OLD.first_purchase_op IS NOT NULL
        AND (NEW.first_purchase_op IS NOT OLD.first_purchase_op
             OR NEW.first_purchase_at IS NOT OLD.first_purchase_at))
    OR (OLD.credited_at IS NOT NULL
        AND (NEW.credited_at IS NOT OLD.credited_at OR NEW.month IS NOT OLD.month))
BEGIN
    SELECT RAISE(ABORT, 'a referral is settled once');
END;

CREATE TRIGGER referrals_no_delete BEFORE DELETE ON referrals
BEGIN
    SELECT RAISE(ABORT, 'referrals are kept');
END;
