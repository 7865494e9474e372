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

-- The ids of the latest fetched batch: the only updates Telegram can deliver again after a
-- crash (each fetch acknowledges the batch before it). A fetched update found here is such a
-- copy; any other id found in update_journal is a new update reusing an old id (a Bot API
-- server that started its ids over) and replaces the old row.
CREATE TABLE update_journal_last_fetch (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    update_ids TEXT    NOT NULL CHECK (json_valid(update_ids))
) STRICT;
