-- Each member's lifetime earnings (the points of every lot an earning operation created),
-- kept by a trigger: /balance summed them by joining every lot the member ever had with its
-- operation, a read that grew with every purchase a regular customer made.

-- The operation kinds that earn (storage/ledger.py EARN_KINDS; a test keeps the two equal).
CREATE TABLE earn_kinds (
    kind TEXT PRIMARY KEY
) STRICT, WITHOUT ROWID;

INSERT INTO earn_kinds (kind) VALUES
    ('purchase'), ('birthday'), ('survey'), ('game'), ('share_bonus'), ('compensation'),
    ('campaign');

CREATE TABLE member_earned (
    member_id INTEGER PRIMARY KEY REFERENCES members (id),
    points    INTEGER NOT NULL CHECK (points >= 0)
) STRICT;

INSERT INTO member_earned (member_id, points)
    SELECT l.member_id, sum(l.points) FROM lots AS l
    JOIN operations AS o ON o.id = l.operation_id
    WHERE o.kind IN (SELECT kind FROM earn_kinds)
    GROUP BY l.member_id;

-- Lots and operations are append-only and a lot's points never change (0002_ledger.sql), so
-- counting each new lot of an earning operation is the whole story.
CREATE TRIGGER lots_count_earned AFTER INSERT ON lots
WHEN EXISTS (
    SELECT 1 FROM operations AS o JOIN earn_kinds AS k ON k.kind = o.kind
    WHERE o.id = NEW.operation_id
)
BEGIN
    INSERT INTO member_earned (member_id, points) VALUES (NEW.member_id, NEW.points)
        ON CONFLICT (member_id) DO UPDATE SET points = points + excluded.points;
END;

CREATE TRIGGER member_earned_no_delete BEFORE DELETE ON member_earned
BEGIN
    SELECT RAISE(ABORT, 'a member''s lifetime earnings are never deleted');
END;

CREATE TRIGGER earn_kinds_fixed BEFORE DELETE ON earn_kinds
BEGIN
    SELECT RAISE(ABORT, 'earning kinds are changed by a migration, which recounts the totals');
END;

CREATE TRIGGER earn_kinds_fixed_update BEFORE UPDATE ON earn_kinds
BEGIN
    SELECT RAISE(ABORT, 'earning kinds are changed by a migration, which recounts the totals');
END;
