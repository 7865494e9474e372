-- A returned purchase undoes the tier upgrade it caused (issue 17): a member moved down by a
-- return is recorded with reason 'return' and the return's operation. 0024's CHECK on reason
-- forbade it, so the table is rebuilt (nothing references it); every other invariant stays.
-- Times are Unix seconds.

ALTER TABLE tier_changes RENAME TO tier_changes_0029;

CREATE TABLE tier_changes (
    id           INTEGER PRIMARY KEY,
    member_id    INTEGER NOT NULL REFERENCES members (id),
    from_tier    TEXT,
    to_tier      TEXT    NOT NULL CHECK (length(to_tier) > 0),
    reason       TEXT    NOT NULL CHECK (reason IN ('upgrade', 'review', 'staff', 'return')),
    total        INTEGER NOT NULL,
    -- The purchase that crossed the threshold (upgrade), or the return that undid it (return).
    operation_id INTEGER REFERENCES operations (id),
    actor        TEXT    NOT NULL,
    changed_at   INTEGER NOT NULL,
    CHECK (reason <> 'return' OR operation_id IS NOT NULL)
) STRICT;

INSERT INTO tier_changes (id, member_id, from_tier, to_tier, reason, total, operation_id, actor,
    changed_at)
SELECT id, member_id, from_tier, to_tier, reason, total, operation_id, actor, changed_at
FROM tier_changes_0029;

-- Drops 0024's index and triggers with it (the implicit delete fires no trigger).
DROP TABLE tier_changes_0029;

CREATE INDEX tier_changes_member ON tier_changes (member_id, changed_at);

CREATE TRIGGER tier_changes_no_update BEFORE UPDATE ON tier_changes
BEGIN
    SELECT RAISE(ABORT, 'tier changes are kept as recorded');
END;

CREATE TRIGGER tier_changes_no_delete BEFORE DELETE ON tier_changes
BEGIN
    SELECT RAISE(ABORT, 'tier changes are kept');
END;
