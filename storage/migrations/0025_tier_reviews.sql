-- The yearly tier review (issue 22): each year's downgrade notice and review run once, and a
-- returned purchase leaves its month's qualifying figures once. Times are Unix seconds (UTC).

-- One row per qualification year (the calendar year reviewed on the next 1 January): when its
-- notices were queued and when its review finished. A run missed while the bot was down is
-- found by the next daily job (bot/jobs.py).
CREATE TABLE tier_reviews (
    year        INTEGER PRIMARY KEY CHECK (year BETWEEN 1970 AND 9999),
    noticed_at  INTEGER,
    notices     INTEGER CHECK (notices IS NULL OR notices >= 0),
    reviewed_at INTEGER,
    reviewed    INTEGER CHECK (reviewed IS NULL OR reviewed >= 0),
    downgrades  INTEGER CHECK (downgrades IS NULL OR downgrades >= 0),
    CHECK ((noticed_at IS NULL) = (notices IS NULL)),
    CHECK ((reviewed_at IS NULL) = (downgrades IS NULL))
) STRICT;

-- Returned purchases taken out of their month's figures: once per purchase operation, with
-- what was taken (the figures never go below 0, so this is what the return removed).
CREATE TABLE tier_withdrawals (
    operation_id INTEGER PRIMARY KEY REFERENCES operations (id),
    member_id    INTEGER NOT NULL REFERENCES members (id),
    month        TEXT    NOT NULL CHECK (month GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),
    points       INTEGER NOT NULL CHECK (points >= 0),
    fen          INTEGER NOT NULL CHECK (fen >= 0),
    withdrawn_at INTEGER NOT NULL
) STRICT;

CREATE TRIGGER tier_withdrawals_no_update BEFORE UPDATE ON tier_withdrawals
BEGIN
    SELECT RAISE(ABORT, 'tier withdrawals are kept as recorded');
END;

CREATE TRIGGER tier_withdrawals_no_delete BEFORE DELETE ON tier_withdrawals
BEGIN
    SELECT RAISE(ABORT, 'tier withdrawals are kept');
END;
