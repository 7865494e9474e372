-- Member tiers (issue 22): what qualifies each member, the tier each holds, and every change
-- of tier. Times are Unix seconds (UTC); months are local ('2026-12').

-- Tier entry rewards and personal plans' gifts are points from sources of their own.
INSERT INTO accounts (kind, name) VALUES ('source', 'tier'), ('source', 'plan');

-- What a member's purchases add to the qualifying measure, per local month of the purchase:
-- purchase points (before campaign and tier bonuses) and yuan spent (in fen). A tier's
-- window ([tiers] window) is a run of months; a return takes its purchase back from its month.
CREATE TABLE tier_months (
    member_id INTEGER NOT NULL REFERENCES members (id),
    month     TEXT    NOT NULL CHECK (month GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),
    points    INTEGER NOT NULL CHECK (points >= 0),
    fen       INTEGER NOT NULL CHECK (fen >= 0),
    PRIMARY KEY (member_id, month)
) STRICT, WITHOUT ROWID;

-- The tier each member holds; none: the lowest tier.
CREATE TABLE member_tiers (
    member_id INTEGER PRIMARY KEY REFERENCES members (id),
    tier_id   TEXT    NOT NULL CHECK (length(tier_id) > 0),
    since     INTEGER NOT NULL
) STRICT;

-- Every change of a member's tier, kept for good: the audit checks each tier bonus against
-- the tier held when it was booked. from_tier NULL: the lowest tier (never changed before).
-- operation_id: the purchase that crossed the threshold, for an upgrade.
CREATE TABLE tier_changes (
    id           INTEGER PRIMARY KEY,
    member_id    INTEGER NOT NULL REFERENCES members (id),
    from_tier    TEXT,
    to_tier      TEXT    NOT NULL CHECK (length(to_tier) > 0),
    reason       TEXT    NOT NULL CHECK (reason IN ('upgrade', 'review', 'staff')),
    total        INTEGER NOT NULL,
    operation_id INTEGER REFERENCES operations (id),
    actor        TEXT    NOT NULL,
    changed_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX tier_changes_member ON tier_changes (member_id, changed_at);

CREATE TRIGGER tier_changes_no_update BEFORE UPDATE ON tier_changes
BEGIN
    SELECT RAISE(ABORT, 'tier changes are kept as recorded');
END;

CREATE TRIGGER tier_changes_no_delete BEFORE DELETE ON tier_changes
BEGIN
    SELECT RAISE(ABORT, 'tier changes are kept');
END;
