-- Key customers and their personal plans (issue 22): who is marked, each plan's terms, and
-- every change staff made to either, kept for good. Times are Unix seconds (UTC); days are
-- local ('2026-12-01').

-- The members staff marked as key customers (高净值客户); unmarking deletes the row, the
-- history stays in plan_changes.
CREATE TABLE key_customers (
    member_id INTEGER PRIMARY KEY REFERENCES members (id),
    marked_at INTEGER NOT NULL,
    actor     TEXT    NOT NULL CHECK (length(actor) > 0),
    reason    TEXT    NOT NULL CHECK (length(reason) > 0)
) STRICT;

-- A personal plan (专属积分方案). categories: a JSON list of purchase category ids (empty: all
-- of them); skus: a JSON list of mall item ids with priority access. The window is the local
-- days starts_on..ends_on, also kept as the instants [from_at, until_at) so a check needs no
-- timezone. ended_at: ended early by staff (or replaced by a new plan).
CREATE TABLE plans (
    id              INTEGER PRIMARY KEY,
    member_id       INTEGER NOT NULL REFERENCES members (id),
    categories      TEXT    NOT NULL CHECK (json_type(categories) = 'array'),
    multiplier      TEXT    NOT NULL
                    CHECK (CAST(multiplier AS REAL) >= 1 AND CAST(multiplier AS REAL) <= 5),
    starts_on       TEXT    NOT NULL CHECK (starts_on GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]'),
    ends_on         TEXT    NOT NULL CHECK (ends_on GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]'),
    from_at         INTEGER NOT NULL,
    until_at        INTEGER NOT NULL,
    gift_threshold_fen INTEGER CHECK (gift_threshold_fen > 0),
    gift_points     INTEGER CHECK (gift_points > 0 AND gift_points <= 1000000),
    -- What the member spent on purchases booked while the plan ran, dated in its window.
    spent_fen       INTEGER NOT NULL DEFAULT 0 CHECK (spent_fen >= 0),
    skus            TEXT    NOT NULL CHECK (json_type(skus) = 'array'),
    advisor_id      INTEGER,
    advisor_contact TEXT,
    created_at      INTEGER NOT NULL,
    actor           TEXT    NOT NULL CHECK (length(actor) > 0),
    ended_at        INTEGER,
    CHECK (ends_on >= starts_on AND until_at > from_at),
    CHECK ((gift_threshold_fen IS NULL) = (gift_points IS NULL)),
    CHECK ((advisor_id IS NULL) = (advisor_contact IS NULL))
) STRICT;

CREATE INDEX plans_member ON plans (member_id, until_at);
CREATE INDEX plans_running ON plans (until_at) WHERE ended_at IS NULL;

-- A day of a member's purchases is governed by one plan at most: two plans not ended may not
-- overlap (a new plan ends the running one first).
CREATE TRIGGER plans_no_overlap BEFORE INSERT ON plans
WHEN EXISTS (
    SELECT 1 FROM plans WHERE member_id = NEW.member_id AND ended_at IS NULL
    AND starts_on <= NEW.ends_on AND ends_on >= NEW.starts_on
)
BEGIN
    SELECT RAISE(ABORT, 'the member already has a plan for these days');
END;

-- The terms are fixed once set: only the spend counter moves, and a plan ends once.
CREATE TRIGGER plans_terms_fixed BEFORE UPDATE ON plans
WHEN NEW.member_id IS NOT OLD.member_id OR NEW.categories IS NOT OLD.categories
    OR NEW.multiplier IS NOT OLD.multiplier OR NEW.starts_on IS NOT OLD.starts_on
    OR NEW.ends_on IS NOT OLD.ends_on OR NEW.from_at IS NOT OLD.from_at
    OR NEW.until_at IS NOT OLD.until_at OR NEW.gift_threshold_fen IS NOT OLD.gift_threshold_fen
    OR NEW.gift_points IS NOT OLD.gift_points OR NEW.skus IS NOT OLD.skus
    OR NEW.advisor_id IS NOT OLD.advisor_id OR NEW.advisor_contact IS NOT OLD.advisor_contact
    OR NEW.created_at IS NOT OLD.created_at OR NEW.actor IS NOT OLD.actor
    OR (OLD.ended_at IS NOT NULL AND NEW.ended_at IS NOT OLD.ended_at)
BEGIN
    SELECT RAISE(ABORT, 'a plan''s terms are kept as set');
END;

CREATE TRIGGER plans_no_delete BEFORE DELETE ON plans
BEGIN
    SELECT RAISE(ABORT, 'plans are kept');
END;

-- Every change staff made: a key-customer mark or unmark, a plan created, changed (replaced
-- by a new one) or ended early; who, when and why. Append-only.
CREATE TABLE plan_changes (
    id         INTEGER PRIMARY KEY,
    member_id  INTEGER NOT NULL REFERENCES members (id),
    plan_id    INTEGER REFERENCES plans (id),
    action     TEXT    NOT NULL CHECK (action IN ('mark', 'unmark', 'create', 'change', 'end')),
    reason     TEXT    NOT NULL,
    terms      TEXT    CHECK (terms IS NULL OR json_valid(terms)),
    actor      TEXT    NOT NULL CHECK (length(actor) > 0),
    changed_at INTEGER NOT NULL,
    CHECK ((action IN ('mark', 'unmark')) = (plan_id IS NULL))
) STRICT;

CREATE INDEX plan_changes_member ON plan_changes (member_id, changed_at);

CREATE TRIGGER plan_changes_no_update BEFORE UPDATE ON plan_changes
BEGIN
    SELECT RAISE(ABORT, 'plan changes are kept as recorded');
END;

CREATE TRIGGER plan_changes_no_delete BEFORE DELETE ON plan_changes
BEGIN
    SELECT RAISE(ABORT, 'plan changes are kept');
END;

-- A staff member's /plan conversation: the member and the terms chosen so far, so a restart
-- continues where they were. One per staff member; deleted when done.
CREATE TABLE plan_drafts (
    staff_id   INTEGER PRIMARY KEY,
    member_id  INTEGER NOT NULL REFERENCES members (id),
    step       TEXT    NOT NULL,
    terms      TEXT    NOT NULL CHECK (json_valid(terms)),
    updated_at INTEGER NOT NULL
) STRICT;
