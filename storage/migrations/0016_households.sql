-- Households (issue 20): members who share points. Times are Unix seconds (UTC).
--
-- A household has one head (its creator, a role that can be handed over). Membership is a
-- history, one row per stay, never deleted: `left_at` is set when the member leaves, is
-- removed, or the household is dissolved, so the audit can tell whether two members shared a
-- household at the instant a transfer between them was booked.
CREATE TABLE households (
    id              INTEGER PRIMARY KEY,
    created_by      INTEGER NOT NULL REFERENCES members (id),
    head_id         INTEGER NOT NULL REFERENCES members (id),
    created_at      INTEGER NOT NULL,
    dissolved_at    INTEGER,
    dissolved_by    TEXT,
    dissolve_reason TEXT,
    CHECK ((dissolved_at IS NULL) = (dissolved_by IS NULL))
) STRICT;

CREATE TABLE household_members (
    id           INTEGER PRIMARY KEY,
    household_id INTEGER NOT NULL REFERENCES households (id),
    member_id    INTEGER NOT NULL REFERENCES members (id),
    joined_at    INTEGER NOT NULL,
    left_at      INTEGER,
    left_how     TEXT CHECK (left_how IN ('left', 'removed', 'dissolved')),
    CHECK ((left_at IS NULL) = (left_how IS NULL)),
    CHECK (left_at IS NULL OR left_at >= joined_at)
) STRICT;

-- A member belongs to one household at a time: the database refuses a second.
CREATE UNIQUE INDEX household_members_current ON household_members (member_id)
    WHERE left_at IS NULL;
CREATE INDEX household_members_by_household ON household_members (household_id, left_at);
CREATE INDEX household_members_by_member ON household_members (member_id, joined_at);

-- A stay may end (left_at, left_how set once); nothing else about it changes, and no stay
-- is deleted.
CREATE TRIGGER household_members_history_update
    BEFORE UPDATE OF id, household_id, member_id, joined_at ON household_members
BEGIN
    SELECT RAISE(ABORT, 'household membership history is append-only');
END;

CREATE TRIGGER household_members_end_once BEFORE UPDATE OF left_at, left_how ON household_members
WHEN OLD.left_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a household stay ends once');
END;

CREATE TRIGGER household_members_no_delete BEFORE DELETE ON household_members
BEGIN
    SELECT RAISE(ABORT, 'household membership history is append-only');
END;

-- A one-time invitation for one person: a deep-link token and a short code to type, valid
-- until expires_at; answered once (accepted, declined) or revoked by the household.
CREATE TABLE household_invitations (
    id           INTEGER PRIMARY KEY,
    household_id INTEGER NOT NULL REFERENCES households (id),
    invited_by   INTEGER NOT NULL REFERENCES members (id),
    token        TEXT    NOT NULL UNIQUE,
    code         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    answered_by  INTEGER REFERENCES members (id),
    answered_at  INTEGER,
    answer       TEXT    CHECK (answer IN ('accepted', 'declined', 'revoked')),
    CHECK ((answer IS NULL) = (answered_at IS NULL)),
    CHECK (expires_at > created_at)
) STRICT;

-- A short code names one open invitation at a time.
CREATE UNIQUE INDEX household_invitations_open_code ON household_invitations (code)
    WHERE answer IS NULL;
CREATE INDEX household_invitations_by_household ON household_invitations (household_id);

-- What happened to a household, for the audit trail: created, joined, left, removed,
-- head handed over, dissolved (by staff, with a reason). Append-only.
CREATE TABLE household_events (
    id           INTEGER PRIMARY KEY,
    household_id INTEGER NOT NULL REFERENCES households (id),
    kind         TEXT    NOT NULL
        CHECK (kind IN ('created', 'joined', 'left', 'removed', 'head_changed', 'dissolved')),
    member_id    INTEGER REFERENCES members (id),
    actor        TEXT    NOT NULL,
    reason       TEXT,
    at           INTEGER NOT NULL
) STRICT;

CREATE INDEX household_events_by_household ON household_events (household_id, id);

CREATE TRIGGER household_events_append_only_update BEFORE UPDATE ON household_events
BEGIN
    SELECT RAISE(ABORT, 'household events are append-only');
END;

CREATE TRIGGER household_events_append_only_delete BEFORE DELETE ON household_events
BEGIN
    SELECT RAISE(ABORT, 'household events are append-only');
END;

-- A member shows their balance and what expires soon to their household only when they
-- choose to (/settings); off by default.
ALTER TABLE members ADD COLUMN share_balance INTEGER NOT NULL DEFAULT 0
    CHECK (share_balance IN (0, 1));
