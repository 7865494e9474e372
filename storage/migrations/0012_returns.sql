-- Returns as /rules says them (storage/mall.py): an uncollected redemption is cancelled and
-- refunded at once (issued -> returned); picked-up goods may be returned once, with the
-- member's reason, for staff to inspect (used -> return_requested -> returned, or back to used
-- when staff refuse it); staff may cancel one order they cannot honour (-> cancelled).
-- 0003's CHECK "(status = 'used') = (used_at IS NOT NULL)" forbade a used item ever being
-- returned, so the table is rebuilt (nothing references it); every other invariant stays.
-- Times are Unix seconds.

ALTER TABLE redemptions RENAME TO redemptions_0011;

CREATE TABLE redemptions (
    id                        INTEGER PRIMARY KEY,
    code                      TEXT    NOT NULL UNIQUE CHECK (length(code) = 8),
    offer_id                  INTEGER NOT NULL UNIQUE REFERENCES offers (id),
    member_id                 INTEGER NOT NULL REFERENCES members (id),
    sku                       TEXT    NOT NULL REFERENCES catalog_items (sku),
    kind                      TEXT    NOT NULL
        CHECK (kind IN ('goods', 'voucher', 'deduction', 'service')),
    points                    INTEGER NOT NULL CHECK (points > 0),
    deduction_yuan            TEXT,
    status                    TEXT    NOT NULL DEFAULT 'issued' CHECK (status IN (
        'issued', 'used', 'return_requested', 'return_rejected', 'returned', 'cancelled'
    )),
    spend_operation_id        INTEGER NOT NULL UNIQUE REFERENCES operations (id),
    refund_operation_id       INTEGER UNIQUE REFERENCES operations (id),
    compensation_operation_id INTEGER UNIQUE REFERENCES operations (id),
    -- Why a return was rejected, the item delisted or the order not honoured.
    note                      TEXT,
    -- Who took the last step (return request, approval, rejection, fulfilment, delisting).
    handled_by                TEXT,
    created_at                INTEGER NOT NULL,
    -- When the member collected it (set once; it stays set through a return of the goods).
    used_at                   INTEGER,
    return_requested_at       INTEGER,
    resolved_at               INTEGER,
    -- The member's reason for returning picked-up goods (one of the programme's reasons).
    return_reason             TEXT CHECK (return_reason IS NULL OR length(return_reason) > 0),
    -- Points came back exactly when the redemption was returned or cancelled.
    CHECK ((status IN ('returned', 'cancelled')) = (refund_operation_id IS NOT NULL)),
    CHECK (compensation_operation_id IS NULL OR status = 'cancelled'),
    -- Used means collected; only collected goods under (or after) a return keep used_at
    -- otherwise; nothing collected is cancelled as the merchant's fault.
    CHECK (status <> 'used' OR used_at IS NOT NULL),
    CHECK (used_at IS NULL OR status IN ('used', 'return_requested', 'returned')),
    -- A return under review or decided was asked for at a known instant.
    CHECK (status NOT IN ('return_requested', 'return_rejected') OR return_requested_at IS NOT NULL),
    CHECK (return_reason IS NULL OR return_requested_at IS NOT NULL)
) STRICT;

INSERT INTO redemptions (id, code, offer_id, member_id, sku, kind, points, deduction_yuan,
    status, spend_operation_id, refund_operation_id, compensation_operation_id, note,
    handled_by, created_at, used_at, return_requested_at, resolved_at)
SELECT id, code, offer_id, member_id, sku, kind, points, deduction_yuan, status,
    spend_operation_id, refund_operation_id, compensation_operation_id, note, handled_by,
    created_at, used_at, return_requested_at, resolved_at
FROM redemptions_0011;

-- Drops 0003's indexes and triggers with it (the implicit delete fires no trigger).
DROP TABLE redemptions_0011;

-- A member's redemptions, newest first.
CREATE INDEX redemptions_by_member ON redemptions (member_id, id);
-- What counts toward the per-member limit.
CREATE INDEX redemptions_counted ON redemptions (member_id, sku)
    WHERE status NOT IN ('returned', 'cancelled');
-- What a delisting has to cancel: open and never collected.
CREATE INDEX redemptions_open_by_sku ON redemptions (sku, id)
    WHERE status IN ('issued', 'return_requested', 'return_rejected') AND used_at IS NULL;
-- The returns waiting for staff (/returns), oldest first.
CREATE INDEX redemptions_returns_pending ON redemptions (return_requested_at, id)
    WHERE status = 'return_requested';

CREATE TRIGGER redemptions_fixed_identity
    BEFORE UPDATE OF id, code, offer_id, member_id, sku, kind, points, deduction_yuan,
        spend_operation_id, created_at ON redemptions
BEGIN
    SELECT RAISE(ABORT, 'a redemption never changes what was bought');
END;

-- issued -> used | returned (cancelled by the member) | cancelled (by the merchant);
-- used -> return_requested, once (a return asked for is never asked for again);
-- return_requested -> returned | cancelled, -> return_rejected when never collected (0003's
-- returns of uncollected goods), -> used when collected goods are refused back;
-- return_rejected -> used | cancelled; returned and cancelled are final.
CREATE TRIGGER redemptions_status_flow BEFORE UPDATE OF status ON redemptions
WHEN NEW.status IS NOT OLD.status AND NOT (
    OLD.status || '>' || NEW.status IN (
        'issued>used', 'issued>returned', 'issued>cancelled',
        'return_requested>returned', 'return_requested>cancelled',
        'return_rejected>used', 'return_rejected>cancelled'
    )
    OR (OLD.status = 'used' AND NEW.status = 'return_requested'
        AND OLD.return_requested_at IS NULL)
    OR (OLD.status = 'return_requested' AND NEW.status = 'return_rejected'
        AND OLD.used_at IS NULL)
    OR (OLD.status = 'return_requested' AND NEW.status = 'used' AND OLD.used_at IS NOT NULL)
)
BEGIN
    SELECT RAISE(ABORT, 'a redemption cannot move between these statuses');
END;

CREATE TRIGGER redemptions_settled_once
    BEFORE UPDATE OF refund_operation_id, compensation_operation_id ON redemptions
WHEN OLD.refund_operation_id IS NOT NULL OR OLD.compensation_operation_id IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a redemption is refunded at most once');
END;

-- When it was collected, when a return was asked for and why are history: set once.
CREATE TRIGGER redemptions_return_history_kept
    BEFORE UPDATE OF used_at, return_requested_at, return_reason ON redemptions
WHEN (OLD.used_at IS NOT NULL AND NEW.used_at IS NOT OLD.used_at)
    OR (OLD.return_requested_at IS NOT NULL
        AND NEW.return_requested_at IS NOT OLD.return_requested_at)
    OR (OLD.return_reason IS NOT NULL AND NEW.return_reason IS NOT OLD.return_reason)
BEGIN
    SELECT RAISE(ABORT, 'when a redemption was collected or returned is never rewritten');
END;

CREATE TRIGGER redemptions_no_delete BEFORE DELETE ON redemptions
BEGIN
    SELECT RAISE(ABORT, 'redemptions are never deleted');
END;
