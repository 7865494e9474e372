-- Members: one row per Telegram user who pressed /start. Times are Unix seconds (UTC).
CREATE TABLE members (
    id                INTEGER PRIMARY KEY,
    telegram_id       INTEGER NOT NULL UNIQUE,
    member_code       TEXT    NOT NULL UNIQUE,
    first_name        TEXT    NOT NULL,
    last_name         TEXT,
    username          TEXT,
    telegram_language TEXT,
    language          TEXT,
    start_payload     TEXT,
    joined_at         INTEGER NOT NULL,
    last_seen_at      INTEGER NOT NULL
) STRICT;
