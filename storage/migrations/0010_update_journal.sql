-- Every update fetched from Telegram, kept from before it is acknowledged (the offset of the
-- next getUpdates) until it has been handled, so a bot killed in between handles it at its
-- next start (bot/updates.py). body is the update's JSON as fetched; it is dropped once the
-- update is handled: a handled row only has to say "already seen" when Telegram delivers it
-- again after a crash. attempts counts the replays after restarts that were started (one
-- started again and again, never finished, is given up: it would keep killing the bot).
-- Times are Unix seconds (UTC).
CREATE TABLE update_journal (
    update_id  INTEGER PRIMARY KEY,
    body       TEXT    CHECK (body IS NULL OR json_valid(body)),
    fetched_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    done_at    INTEGER,
    CHECK (done_at IS NOT NULL OR body IS NOT NULL)
) STRICT;

CREATE INDEX update_journal_open ON update_journal (update_id) WHERE done_at IS NULL;
CREATE INDEX update_journal_done ON update_journal (done_at) WHERE done_at IS NOT NULL;
