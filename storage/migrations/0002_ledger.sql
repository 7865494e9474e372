-- The points ledger: double-entry, append-only, lot-based (DESIGN.md "The ledger").
-- Points are integers. A positive posting credits an account, a negative one debits it,
-- and the postings of one operation sum to zero. Times are Unix seconds (UTC);
-- lots.expires_at NULL means the points never expire.

-- One account per member (opened lazily), plus the programme's system accounts:
-- sources issue points (their balance goes negative), sinks receive spent or expired ones.
CREATE TABLE accounts (
    id        INTEGER PRIMARY KEY,
    kind      TEXT    NOT NULL CHECK (kind IN ('member', 'source', 'sink')),
    name      TEXT    UNIQUE,
    member_id INTEGER UNIQUE REFERENCES members (id),
    balance   INTEGER NOT NULL DEFAULT 0,
    CHECK ((kind = 'member') = (member_id IS NOT NULL)),
    CHECK ((kind = 'member') = (name IS NULL)),
    -- The database itself refuses an overdraft, whatever the Python code does.
    CHECK (kind <> 'member' OR balance >= 0),
    -- A sink only gives back what it received (refunds), so it never goes negative either.
    CHECK (kind <> 'sink' OR balance >= 0)
) STRICT;

INSERT INTO accounts (kind, name) VALUES
    ('source', 'purchase'),
    ('source', 'birthday'),
    ('source', 'survey'),
    ('source', 'game'),
    ('source', 'share_bonus'),
    ('source', 'campaign'),
    ('source', 'compensation'),
    ('source', 'adjustment'),
    ('sink', 'redeemed'),
    ('sink', 'expired'),
    ('sink', 'game_cost');

-- One row per change of points: one SQL transaction. The idempotency key makes a retried
-- request harmless; the fingerprint tells a retry from a different request reusing a key.
-- reverses_operation_id is UNIQUE so a spend can be refunded at most once.
CREATE TABLE operations (
    id                    INTEGER PRIMARY KEY,
    kind                  TEXT    NOT NULL,
    idempotency_key       TEXT    NOT NULL UNIQUE,
    fingerprint           TEXT    NOT NULL,
    member_id             INTEGER NOT NULL REFERENCES members (id),
    counterparty_id       INTEGER REFERENCES members (id),
    points                INTEGER NOT NULL CHECK (points >= 0),
    actor                 TEXT    NOT NULL,
    reason                TEXT,
    reference             TEXT,
    reverses_operation_id INTEGER UNIQUE REFERENCES operations (id),
    created_at            INTEGER NOT NULL,
    meta                  TEXT    CHECK (meta IS NULL OR json_valid(meta))
) STRICT;

CREATE TABLE postings (
    id           INTEGER PRIMARY KEY,
    operation_id INTEGER NOT NULL REFERENCES operations (id),
    account_id   INTEGER NOT NULL REFERENCES accounts (id),
    amount       INTEGER NOT NULL CHECK (amount <> 0)
) STRICT;

-- Statement of one member, newest first, and balance as of an operation.
CREATE INDEX postings_by_account ON postings (account_id, operation_id);
CREATE INDEX postings_by_operation ON postings (operation_id);

-- Each credit to a member is a lot with its own expiry; remainder is a cache of
-- points minus allocations, kept by the allocations trigger below.
CREATE TABLE lots (
    id            INTEGER PRIMARY KEY,
    member_id     INTEGER NOT NULL REFERENCES members (id),
    operation_id  INTEGER NOT NULL REFERENCES operations (id),
    points        INTEGER NOT NULL CHECK (points > 0),
    remainder     INTEGER NOT NULL CHECK (remainder >= 0 AND remainder <= points),
    expires_at    INTEGER,
    origin_lot_id INTEGER REFERENCES lots (id)
) STRICT;

CREATE INDEX lots_by_member ON lots (member_id, id);
CREATE INDEX lots_by_operation ON lots (operation_id);
-- Spend order: soonest expiry first, never-expiring (NULL) last, then oldest. The query in
-- storage/ledger.py repeats this exact expression so SQLite walks the index without sorting;
-- the partial index shrinks as lots are used up.
CREATE INDEX lots_spendable
    ON lots (member_id, coalesce(expires_at, 9223372036854775807), id)
    WHERE remainder > 0;
-- The expiry sweep: due lots that still hold points.
CREATE INDEX lots_due ON lots (expires_at, id) WHERE remainder > 0 AND expires_at IS NOT NULL;

-- Which lots an operation consumed, and how much of each.
CREATE TABLE allocations (
    id           INTEGER PRIMARY KEY,
    operation_id INTEGER NOT NULL REFERENCES operations (id),
    lot_id       INTEGER NOT NULL REFERENCES lots (id),
    points       INTEGER NOT NULL CHECK (points > 0)
) STRICT;

CREATE INDEX allocations_by_operation ON allocations (operation_id);
CREATE INDEX allocations_by_lot ON allocations (lot_id);

-- Cached balances and remainders move in the same statement as the row that justifies them.
CREATE TRIGGER postings_maintain_balance AFTER INSERT ON postings
BEGIN
    UPDATE accounts SET balance = balance + NEW.amount WHERE id = NEW.account_id;
END;

CREATE TRIGGER allocations_maintain_remainder AFTER INSERT ON allocations
BEGIN
    UPDATE lots SET remainder = remainder - NEW.points WHERE id = NEW.lot_id;
END;

-- Append-only: history is never rewritten; corrections are new operations.
CREATE TRIGGER operations_append_only_update BEFORE UPDATE ON operations
BEGIN
    SELECT RAISE(ABORT, 'operations are append-only');
END;

CREATE TRIGGER operations_append_only_delete BEFORE DELETE ON operations
BEGIN
    SELECT RAISE(ABORT, 'operations are append-only');
END;

CREATE TRIGGER postings_append_only_update BEFORE UPDATE ON postings
BEGIN
    SELECT RAISE(ABORT, 'postings are append-only');
END;

CREATE TRIGGER postings_append_only_delete BEFORE DELETE ON postings
BEGIN
    SELECT RAISE(ABORT, 'postings are append-only');
END;

CREATE TRIGGER allocations_append_only_update BEFORE UPDATE ON allocations
BEGIN
    SELECT RAISE(ABORT, 'allocations are append-only');
END;

CREATE TRIGGER allocations_append_only_delete BEFORE DELETE ON allocations
BEGIN
    SELECT RAISE(ABORT, 'allocations are append-only');
END;

-- Only the cached remainder of a lot may change, and only downwards: refunded points go
-- into new lots linked by origin_lot_id, so a lot is swept by expiry at most once.
CREATE TRIGGER lots_append_only_update
    BEFORE UPDATE OF id, member_id, operation_id, points, expires_at, origin_lot_id ON lots
BEGIN
    SELECT RAISE(ABORT, 'lots are append-only');
END;

CREATE TRIGGER lots_remainder_only_decreases BEFORE UPDATE OF remainder ON lots
WHEN NEW.remainder > OLD.remainder
BEGIN
    SELECT RAISE(ABORT, 'a lot remainder never grows');
END;

CREATE TRIGGER lots_append_only_delete BEFORE DELETE ON lots
BEGIN
    SELECT RAISE(ABORT, 'lots are append-only');
END;

-- Only the cached balance of an account may change.
CREATE TRIGGER accounts_fixed_identity BEFORE UPDATE OF id, kind, name, member_id ON accounts
BEGIN
    SELECT RAISE(ABORT, 'an account never changes identity');
END;

CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts
BEGIN
    SELECT RAISE(ABORT, 'accounts are never deleted');
END;
