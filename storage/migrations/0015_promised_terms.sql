-- The points-value guarantee (issue 16): what members were promised, and announced changes.
--
-- promised_terms: the terms in force the last time the bot started (or at the last local
-- midnight): the earn rate, each category's multiplier, the bill-deduction rate, each source's
-- expiry policy, each listed item's price. A configuration that is worse for members on any
-- of them is refused at start unless an announced change brings it (bot/programme/policy.py).
-- A brand-new database takes the file as it is. Values are JSON.
CREATE TABLE promised_terms (
    term        TEXT    PRIMARY KEY,
    value       TEXT    NOT NULL CHECK (json_valid(value)),
    recorded_at INTEGER NOT NULL
) STRICT;

-- An announced change of one term, from its local effective day on. `replaces` is the value
-- it was announced against: the change rewrites the file's value while the file still says
-- that (NULL: whatever the file says, for expiry changes announced before this table).
CREATE TABLE term_changes (
    id           INTEGER PRIMARY KEY,
    term         TEXT    NOT NULL,
    replaces     TEXT    CHECK (replaces IS NULL OR json_valid(replaces)),
    value        TEXT    NOT NULL CHECK (json_valid(value)),
    effective_on TEXT    NOT NULL,
    announced_at INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    UNIQUE (term, effective_on)
) STRICT;

CREATE TRIGGER term_changes_append_only_update BEFORE UPDATE ON term_changes
BEGIN
    SELECT RAISE(ABORT, 'an announced change cannot be altered');
END;

CREATE TRIGGER term_changes_append_only_delete BEFORE DELETE ON term_changes
BEGIN
    SELECT RAISE(ABORT, 'an announced change cannot be withdrawn silently');
END;

-- The expiry-policy changes announced so far become changes of the default policy (term
-- "expiry"), with their ids, so the notices already queued keep their dedupe keys.
INSERT INTO term_changes (id, term, replaces, value, effective_on, announced_at, actor)
SELECT id, 'expiry', NULL, json_object('mode', mode, 'months', months, 'years', years),
       effective_on, announced_at, actor
FROM policy_changes;

DROP TABLE policy_changes;
