-- Transfers between the members of a household (issue 20). Times are Unix seconds (UTC).
--
-- A transfer offer is what the confirmation button books: who sends how much to whom, in
-- which household, until when. It is booked at most once (the ledger operation's key is
-- `transfer:offer:<id>`), so a double tap or a redelivered update moves nothing twice.
CREATE TABLE transfer_offers (
    id           INTEGER PRIMARY KEY,
    sender_id    INTEGER NOT NULL REFERENCES members (id),
    recipient_id INTEGER NOT NULL REFERENCES members (id),
    household_id INTEGER NOT NULL REFERENCES households (id),
    points       INTEGER NOT NULL CHECK (points > 0),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    CHECK (expires_at > created_at),
    CHECK (sender_id <> recipient_id)
) STRICT;

CREATE TRIGGER transfer_offers_fixed BEFORE UPDATE ON transfer_offers
BEGIN
    SELECT RAISE(ABORT, 'a transfer offer never changes');
END;

CREATE TRIGGER transfer_offers_no_delete BEFORE DELETE ON transfer_offers
BEGIN
    SELECT RAISE(ABORT, 'transfer offers are kept');
END;

-- Whom a member chose before typing an amount ("another amount"): the typed text arrives
-- in a later update, maybe after a restart. One open question per member.
CREATE TABLE transfer_prompts (
    member_id    INTEGER PRIMARY KEY REFERENCES members (id),
    recipient_id INTEGER NOT NULL REFERENCES members (id),
    asked_at     INTEGER NOT NULL
) STRICT;

-- The day's and the month's totals of a sender and of a recipient are summed inside the
-- transfer's transaction: these keep that a short indexed range however big the ledger.
CREATE INDEX operations_transfers_sent ON operations (member_id, created_at)
    WHERE kind = 'transfer';
CREATE INDEX operations_transfers_received ON operations (counterparty_id, created_at)
    WHERE kind = 'transfer';

-- An undo reverses a transfer, between the same two members, for the same points: the
-- database refuses anything else (and reverses_operation_id is UNIQUE: at most once).
CREATE TRIGGER operations_transfer_undo_matches BEFORE INSERT ON operations
WHEN NEW.kind = 'transfer_undo' AND NOT EXISTS (
    SELECT 1 FROM operations AS t WHERE t.id = NEW.reverses_operation_id
    AND t.kind = 'transfer' AND t.member_id = NEW.member_id
    AND t.counterparty_id = NEW.counterparty_id AND t.points = NEW.points)
BEGIN
    SELECT RAISE(ABORT, 'a transfer undo reverses a transfer between the same members');
END;
