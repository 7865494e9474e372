-- Family birthdays (issue 20): the children and pets a member adds in /settings, greeted (and
-- given the gift for their kind) on their birthday. Times are Unix seconds (UTC).

-- One row per dependant as entered. A removal ends the row (removed_at), never deletes it: a
-- child or pet removed and added again (same kind and name) gets a new row continuing the old
-- one's history through origin_id, so its once-a-year change and its gift of the year are
-- not reset. entered_at is the latest time its birthday was set or changed (a birthday
-- entered shortly before the date earns no gift that year); changed_at the latest change.
CREATE TABLE dependants (
    id          INTEGER PRIMARY KEY,
    member_id   INTEGER NOT NULL REFERENCES members (id),
    -- The first row of this dependant (NULL: this is it); gifts are keyed by that row's id.
    origin_id   INTEGER REFERENCES dependants (id),
    kind        TEXT    NOT NULL CHECK (kind IN ('child', 'pet')),
    name        TEXT    NOT NULL CHECK (length(trim(name)) BETWEEN 1 AND 20),
    -- The name as compared (case and width folded): "Mimi" and "mimi" are one pet.
    name_key    TEXT    NOT NULL CHECK (length(name_key) > 0),
    month       INTEGER NOT NULL CHECK (month BETWEEN 1 AND 12),
    day         INTEGER NOT NULL CHECK (day BETWEEN 1 AND 31),
    year        INTEGER,
    created_at  INTEGER NOT NULL,
    entered_at  INTEGER NOT NULL,
    changed_at  INTEGER,
    removed_at  INTEGER,
    CHECK (origin_id IS NULL OR origin_id < id)
) STRICT;

-- A member's dependants in the order they were added; one current row per kind and name.
CREATE INDEX dependants_by_member ON dependants (member_id, id);
CREATE UNIQUE INDEX dependants_current_name ON dependants (member_id, kind, name_key)
    WHERE removed_at IS NULL;
-- Whose birthday is today (the daily job).
CREATE INDEX dependants_by_birthday ON dependants (month, day) WHERE removed_at IS NULL;

CREATE TRIGGER dependants_no_delete BEFORE DELETE ON dependants
BEGIN
    SELECT RAISE(ABORT, 'dependants are removed (removed_at), never deleted');
END;

CREATE TRIGGER dependants_fixed_identity
    BEFORE UPDATE OF id, member_id, origin_id, kind, name, name_key, created_at ON dependants
BEGIN
    SELECT RAISE(ABORT, 'a dependant keeps who it is: remove it and add another');
END;

-- A removal is final for the row (adding the dependant again makes a new row).
CREATE TRIGGER dependants_removed_once BEFORE UPDATE ON dependants
WHEN OLD.removed_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a removed dependant is history');
END;

-- A member's dependant being added (kind, then name) or changed (which one), between the
-- typed messages of the /settings conversation: it survives a restart like the conversation.
CREATE TABLE dependant_drafts (
    member_id    INTEGER PRIMARY KEY REFERENCES members (id),
    kind         TEXT    CHECK (kind IS NULL OR kind IN ('child', 'pet')),
    name         TEXT,
    dependant_id INTEGER REFERENCES dependants (id),
    updated_at   INTEGER NOT NULL
) STRICT;
