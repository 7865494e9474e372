-- The monthly report sent to each owner on the 1st (bot/jobs.py). Owners need not be members,
-- so the member-addressed outbox cannot carry it: this row per owner and month is its dedupe
-- record. 'sending' is set in a commit of its own right before the message goes to Telegram;
-- a crash before 'sent' leaves it 'sending', which is never sent again (a report arriving
-- twice is worse than one the owner can ask for with /report). 'failed' is tried again at
-- the next run, up to a few attempts.
CREATE TABLE owner_reports (
    telegram_id INTEGER NOT NULL,
    month       TEXT    NOT NULL CHECK (month GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),
    status      TEXT    NOT NULL CHECK (status IN ('sending', 'sent', 'failed')),
    attempts    INTEGER NOT NULL CHECK (attempts >= 1),
    updated_at  INTEGER NOT NULL,
    last_error  TEXT,
    PRIMARY KEY (telegram_id, month)
) STRICT, WITHOUT ROWID;

-- A sent report stays sent.
CREATE TRIGGER owner_reports_sent_final BEFORE UPDATE ON owner_reports
WHEN OLD.status = 'sent'
BEGIN
    SELECT RAISE(ABORT, 'a sent report is never sent again');
END;
