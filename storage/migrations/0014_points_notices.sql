-- A message for every change of points a member did not make themselves (issue 16).

-- A member may turn off the message sent for each purchase (/settings); notices of
-- adjustments, refunds and compensation are always sent.
ALTER TABLE members ADD COLUMN receipts_opt_in INTEGER NOT NULL DEFAULT 1
    CHECK (receipts_opt_in IN (0, 1));

-- A CSV import tells each member once per run, summing their purchases in it, while it
-- writes in many transactions: each batch adds its new purchases here in the transaction
-- that books them, and the run moves the sums to the outbox at its end. A run that stops
-- in between leaves its rows here, and the next import moves them (none is lost or sent
-- twice). run names the import run; amount_fen is the purchases' total in fen.
CREATE TABLE import_notices (
    run             TEXT    NOT NULL,
    member_id       INTEGER NOT NULL REFERENCES members (id),
    purchases       INTEGER NOT NULL CHECK (purchases > 0),
    amount_fen      INTEGER NOT NULL CHECK (amount_fen > 0),
    points          INTEGER NOT NULL CHECK (points > 0),
    -- The run's first operation for the member: its notice's dedupe key.
    first_operation INTEGER NOT NULL REFERENCES operations (id),
    PRIMARY KEY (run, member_id)
) STRICT;
