-- Purchase returns (issue 17): a purchase refunded at the till takes its points back, in
-- proportion to the yuan refunded; what the member already spent is recorded as owed and
-- netted against their next purchase earnings. Times are Unix seconds (UTC).

-- What members owe: a receivable, so a source-like account that goes negative. A return posts
-- the points it could not take from the member here (-owed); a settlement pays them (+).
INSERT INTO accounts (kind, name) VALUES ('source', 'owed');

-- One row per return, the operation (kind 'purchase_return') that booked it. The returns of
-- one purchase form a chain: each starts where the ones before it stopped (refunded_before),
-- so together they never refund more than was paid.
CREATE TABLE purchase_returns (
    operation_id          INTEGER PRIMARY KEY REFERENCES operations (id),
    purchase_operation_id INTEGER NOT NULL REFERENCES operations (id),
    member_id             INTEGER NOT NULL REFERENCES members (id),
    receipt               TEXT    NOT NULL CHECK (length(receipt) > 0),
    -- The till's (or the CSV row's) id of the return; NULL: keyed by the chat message.
    return_id             TEXT,
    amount_fen            INTEGER NOT NULL CHECK (amount_fen > 0),
    refunded_before_fen   INTEGER NOT NULL CHECK (refunded_before_fen >= 0),
    refunded_fen          INTEGER NOT NULL CHECK (refunded_fen > 0),
    -- Points taken back in all: taken from the member now, and recorded as owed.
    points                INTEGER NOT NULL CHECK (points >= 0),
    taken                 INTEGER NOT NULL CHECK (taken >= 0),
    owed                  INTEGER NOT NULL CHECK (owed >= 0),
    created_at            INTEGER NOT NULL,
    CHECK (refunded_before_fen + refunded_fen <= amount_fen),
    CHECK (points = taken + owed),
    UNIQUE (purchase_operation_id, refunded_before_fen)
) STRICT;

CREATE INDEX purchase_returns_member ON purchase_returns (member_id, operation_id);

CREATE TRIGGER purchase_returns_chained BEFORE INSERT ON purchase_returns
WHEN NEW.refunded_before_fen IS NOT (
    SELECT coalesce(sum(refunded_fen), 0) FROM purchase_returns
    WHERE purchase_operation_id = NEW.purchase_operation_id
) OR NEW.amount_fen IS NOT coalesce((
    SELECT amount_fen FROM purchase_returns
    WHERE purchase_operation_id = NEW.purchase_operation_id LIMIT 1
), NEW.amount_fen)
BEGIN
    SELECT RAISE(ABORT, 'a return starts where the returns of its purchase stopped');
END;

CREATE TRIGGER purchase_returns_no_update BEFORE UPDATE ON purchase_returns
BEGIN
    SELECT RAISE(ABORT, 'purchase returns are kept as recorded');
END;

CREATE TRIGGER purchase_returns_no_delete BEFORE DELETE ON purchase_returns
BEGIN
    SELECT RAISE(ABORT, 'purchase returns are kept');
END;

-- Each member's outstanding owed points: a cache of minus the sum of their operations'
-- postings to the owed account (pointsbot audit checks it), never below zero.
CREATE TABLE owed_points (
    member_id INTEGER PRIMARY KEY REFERENCES members (id),
    points    INTEGER NOT NULL CHECK (points >= 0)
) STRICT;
