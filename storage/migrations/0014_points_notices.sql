-- A message for every change of points a member did not make themselves (issue 16).

-- A member may turn off the message sent for each purchase (/settings); notices of
-- adjustments, refunds and compensation are always sent.
ALTER TABLE members ADD COLUMN receipts_opt_in INTEGER NOT NULL DEFAULT 1
    CHECK (receipts_opt_in IN (0, 1));

-- A CSV import tells each member once per run, summing their purchases in it, while it
-- writes in many transactions: each batch records the range of operation ids it booked, in
-- the transaction that books them (one writer: a batch's operations are consecutive), and the
-- run sums its ranges per member into the outbox at its end. A run that stops in between
-- leaves its rows here, and the next import sums and sends them (none lost or sent twice).
CREATE TABLE import_batches (
    run             TEXT    NOT NULL,
    first_operation INTEGER NOT NULL REFERENCES operations (id),
    last_operation  INTEGER NOT NULL REFERENCES operations (id),
    PRIMARY KEY (run, first_operation),
    CHECK (last_operation >= first_operation)
) STRICT;
