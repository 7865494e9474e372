-- Badges and badge sets (issue 21): who holds which badge, and the collect-all prizes paid.
-- Times are Unix seconds.

-- A badge a member earned: on the first completion of the task that names it, or when a
-- lifetime milestone (eco spend, green points, surveys, purchases) reached its threshold.
-- Earned once, kept for good.
CREATE TABLE member_badges (
    member_id INTEGER NOT NULL REFERENCES members (id),
    badge_id  TEXT    NOT NULL CHECK (length(badge_id) > 0),
    earned_at INTEGER NOT NULL,
    source    TEXT    NOT NULL CHECK (source IN ('task', 'milestone')),
    PRIMARY KEY (member_id, badge_id)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER member_badges_no_update BEFORE UPDATE ON member_badges
BEGIN
    SELECT RAISE(ABORT, 'an earned badge is kept as earned');
END;

CREATE TRIGGER member_badges_no_delete BEFORE DELETE ON member_badges
BEGIN
    SELECT RAISE(ABORT, 'an earned badge is kept');
END;

-- A set's grand prize, once per member and set (the primary key makes it certain): the
-- 'badge' operation that credited it (keyed 'badgeset:<set>:<member>'), and for a mall item
-- given free, the redemption that spent that credit on it. `badges` (a JSON list) is what the
-- set was made of when it was completed, so the audit can check the member held each one.
CREATE TABLE badge_set_prizes (
    member_id     INTEGER NOT NULL REFERENCES members (id),
    set_id        TEXT    NOT NULL CHECK (length(set_id) > 0),
    badges        TEXT    NOT NULL CHECK (json_valid(badges) AND json_type(badges) = 'array'),
    operation_id  INTEGER NOT NULL UNIQUE REFERENCES operations (id),
    redemption_id INTEGER UNIQUE REFERENCES redemptions (id),
    awarded_at    INTEGER NOT NULL,
    PRIMARY KEY (member_id, set_id)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER badge_set_prizes_no_update BEFORE UPDATE ON badge_set_prizes
BEGIN
    SELECT RAISE(ABORT, 'a badge-set prize is final');
END;

CREATE TRIGGER badge_set_prizes_no_delete BEFORE DELETE ON badge_set_prizes
BEGIN
    SELECT RAISE(ABORT, 'a badge-set prize is kept');
END;
