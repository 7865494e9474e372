-- A push is marked 'sending' in a commit of its own right before it is handed to Telegram,
-- and 'sent' (or what else happened) right after: a crash in between leaves it 'sending',
-- the one state in which it may or may not have arrived. At the next start a 'sending'
-- service push goes out again (at least once), a 'sending' marketing push becomes
-- 'unconfirmed' and is not sent again (at most once) unless [push]
-- resend_unconfirmed_marketing says so (bot/jobs.py, README "Pushes"). A marketing push
-- whose request failed in a way that may have reached Telegram (a read timeout, a dropped
-- connection) is 'unconfirmed' too.
--
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt with the same
-- columns and rows (nothing references the outbox).
CREATE TABLE outbox_new (
    id          INTEGER PRIMARY KEY,
    dedupe_key  TEXT    NOT NULL UNIQUE,
    member_id   INTEGER NOT NULL REFERENCES members (id),
    category    TEXT    NOT NULL CHECK (category IN ('service', 'marketing')),
    message_key TEXT    NOT NULL,
    params      TEXT    NOT NULL CHECK (json_valid(params)),
    buttons     TEXT    CHECK (buttons IS NULL OR json_valid(buttons)),
    created_at  INTEGER NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sending', 'sent', 'unconfirmed', 'unreachable',
                                  'skipped', 'failed')),
    -- Requests handed to Telegram for this push.
    attempts    INTEGER NOT NULL DEFAULT 0,
    sent_at     INTEGER,
    -- Why the last attempt failed; never holds the bot token (bot/jobs.py redacts it).
    last_error  TEXT
) STRICT;

INSERT INTO outbox_new (id, dedupe_key, member_id, category, message_key, params, buttons,
                        created_at, status, attempts, sent_at, last_error)
SELECT id, dedupe_key, member_id, category, message_key, params, buttons,
       created_at, status, attempts, sent_at, last_error
FROM outbox;

DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;

CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
-- Found at every start: what a crash left in flight.
CREATE INDEX outbox_sending ON outbox (id) WHERE status = 'sending';

-- Members marked unreachable, found at the first private update after a start (a member
-- who writes to the bot privately is reachable again: handlers/settings.py).
CREATE INDEX members_unreachable ON members (telegram_id) WHERE reachable = 0;
