-- Shares and reviews (issue 21, task kinds share and review): what a member sent for a task,
-- waiting for staff or decided. Times are Unix seconds.

-- One submission: a photo with its caption (share), or a rated review of a category the
-- member bought, optionally with a photo. `period` is the task's local period it counts for
-- (bot/programme/tasks.py period_of), fixed when it is sent, so an approval the next day
-- still counts for the day it was sent. `source` names the message it came from, so a
-- redelivered update files nothing twice.
CREATE TABLE task_submissions (
    id             INTEGER PRIMARY KEY,
    member_id      INTEGER NOT NULL REFERENCES members (id),
    task_id        TEXT    NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('share', 'review')),
    period         TEXT    NOT NULL,
    source         TEXT    NOT NULL UNIQUE,
    file_id        TEXT,
    file_unique_id TEXT,
    caption        TEXT,
    category       TEXT,
    rating         INTEGER CHECK (rating BETWEEN 1 AND 5),
    text           TEXT,
    status         TEXT    NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'approved', 'declined')),
    decided_by     TEXT,
    reason         TEXT,
    created_at     INTEGER NOT NULL,
    decided_at     INTEGER,
    CHECK ((file_id IS NULL) = (file_unique_id IS NULL)),
    -- A share is a photo with words; a review a rating and a text about a category.
    CHECK (kind <> 'share' OR (file_unique_id IS NOT NULL AND caption IS NOT NULL)),
    CHECK (kind <> 'review' OR (rating IS NOT NULL AND text IS NOT NULL AND category IS NOT NULL)),
    -- Decided exactly when someone decided; a reason only for a decline.
    CHECK ((status = 'pending') = (decided_at IS NULL)),
    CHECK ((status = 'pending') = (decided_by IS NULL)),
    CHECK (reason IS NULL OR status = 'declined')
) STRICT;

-- The same photo (Telegram's file_unique_id) never counts twice, for any member.
CREATE UNIQUE INDEX task_submissions_photo ON task_submissions (file_unique_id)
    WHERE file_unique_id IS NOT NULL;
-- The staff queue, oldest first.
CREATE INDEX task_submissions_pending ON task_submissions (id) WHERE status = 'pending';
-- The cap: a member's submissions for a task and period.
CREATE INDEX task_submissions_member ON task_submissions (member_id, task_id, period);

-- A decision is final: a double tap or a second operator cannot change it.
CREATE TRIGGER task_submissions_decided_once BEFORE UPDATE ON task_submissions
WHEN OLD.status <> 'pending'
BEGIN
    SELECT RAISE(ABORT, 'a submission is decided once');
END;

CREATE TRIGGER task_submissions_no_delete BEFORE DELETE ON task_submissions
BEGIN
    SELECT RAISE(ABORT, 'submissions are kept');
END;

-- A review being written: the category and rating chosen with buttons, kept until the text
-- arrives (conversation state survives a restart; this is what it refers to). One per member.
CREATE TABLE review_drafts (
    member_id  INTEGER PRIMARY KEY REFERENCES members (id),
    task_id    TEXT    NOT NULL,
    category   TEXT    NOT NULL,
    rating     INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    created_at INTEGER NOT NULL
) STRICT;
