-- The points mall: the catalog's state, pending offers and redemptions (storage/mall.py).
-- These tables are state machines (UPDATE allowed, guarded by triggers below); every points
-- movement they cause is a ledger operation with an idempotency key. Times are Unix seconds.

-- One row per SKU ever configured. kind/category/price/limit/window follow the configuration;
-- stock and sold are the database's own (an operator's /stock and sales survive a reload).
-- A SKU missing from the configuration is unlisted, never deleted.
CREATE TABLE catalog_items (
    sku              TEXT    PRIMARY KEY,
    kind             TEXT    NOT NULL CHECK (kind IN ('goods', 'voucher', 'deduction', 'service')),
    category         TEXT    NOT NULL,
    -- Points per unit; for a bill deduction the points are decided per offer.
    price            INTEGER NOT NULL CHECK (price >= 0),
    -- Units ever available; NULL = unlimited.
    stock            INTEGER CHECK (stock IS NULL OR stock >= 0),
    sold             INTEGER NOT NULL DEFAULT 0,
    per_member_limit INTEGER CHECK (per_member_limit IS NULL OR per_member_limit > 0),
    available_from   INTEGER,
    available_until  INTEGER,
    listed           INTEGER NOT NULL DEFAULT 1 CHECK (listed IN (0, 1)),
    delisted_at      INTEGER,
    delist_reason    TEXT,
    updated_at       INTEGER NOT NULL,
    -- The database itself refuses to oversell, whatever the Python code does.
    CHECK (sold >= 0),
    CHECK (stock IS NULL OR sold <= stock),
    CHECK ((delisted_at IS NULL) = (delist_reason IS NULL))
) STRICT;

-- A pending action: the confirmation button carries its id (DESIGN.md "Keys from Telegram"),
-- so a double tap or a redelivered update redeems it at most once.
CREATE TABLE offers (
    id             INTEGER PRIMARY KEY,
    member_id      INTEGER NOT NULL REFERENCES members (id),
    sku            TEXT    NOT NULL REFERENCES catalog_items (sku),
    points         INTEGER NOT NULL CHECK (points > 0),
    -- A Decimal as text, for bill deductions.
    deduction_yuan TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    CHECK (expires_at > created_at)
) STRICT;

-- What a member got for their points, and where it stands.
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
    -- Why a return was rejected or the item delisted.
    note                      TEXT,
    -- Who took the last step (return request, approval, rejection, fulfilment, delisting).
    handled_by                TEXT,
    created_at                INTEGER NOT NULL,
    used_at                   INTEGER,
    return_requested_at       INTEGER,
    resolved_at               INTEGER,
    -- Points came back exactly when the redemption was returned or cancelled.
    CHECK ((status IN ('returned', 'cancelled')) = (refund_operation_id IS NOT NULL)),
    CHECK (compensation_operation_id IS NULL OR status = 'cancelled'),
    CHECK ((status = 'used') = (used_at IS NOT NULL))
) STRICT;

-- A member's redemptions, newest first.
CREATE INDEX redemptions_by_member ON redemptions (member_id, id);
-- What counts toward the per-member limit.
CREATE INDEX redemptions_counted ON redemptions (member_id, sku)
    WHERE status NOT IN ('returned', 'cancelled');
-- What a delisting has to cancel.
CREATE INDEX redemptions_open_by_sku ON redemptions (sku, id)
    WHERE status IN ('issued', 'return_requested', 'return_rejected');

CREATE TRIGGER catalog_items_no_delete BEFORE DELETE ON catalog_items
BEGIN
    SELECT RAISE(ABORT, 'catalog items are unlisted, never deleted');
END;

CREATE TRIGGER offers_fixed BEFORE UPDATE ON offers
BEGIN
    SELECT RAISE(ABORT, 'an offer never changes');
END;

CREATE TRIGGER redemptions_fixed_identity
    BEFORE UPDATE OF id, code, offer_id, member_id, sku, kind, points, deduction_yuan,
        spend_operation_id, created_at ON redemptions
BEGIN
    SELECT RAISE(ABORT, 'a redemption never changes what was bought');
END;

-- issued -> used | return_requested | returned | cancelled;
-- return_requested -> returned | return_rejected | cancelled;
-- return_rejected -> used | cancelled; used, returned and cancelled are final.
CREATE TRIGGER redemptions_status_flow BEFORE UPDATE OF status ON redemptions
WHEN NEW.status IS NOT OLD.status AND OLD.status || '>' || NEW.status NOT IN (
    'issued>used', 'issued>return_requested', 'issued>returned', 'issued>cancelled',
    'return_requested>returned', 'return_requested>return_rejected',
    'return_requested>cancelled', 'return_rejected>used', 'return_rejected>cancelled'
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

CREATE TRIGGER redemptions_no_delete BEFORE DELETE ON redemptions
BEGIN
    SELECT RAISE(ABORT, 'redemptions are never deleted');
END;
