-- Tasks and badges (issue 21): the core every task kind builds on. Times are Unix seconds.

-- Task rewards and badge-set prizes are points from sources of their own, so the statement,
-- the expiry policy ([expiry.sources] task / badge) and the audit can tell them apart. The
-- green-share bonus keeps its own source (share_bonus).
INSERT INTO accounts (kind, name) VALUES ('source', 'task'), ('source', 'badge');

-- One member's progress in one task for one period: 'once', a local day '2026-12-02', an
-- ISO week '2026-W49' or a month '2026-12' (bot/programme/tasks.py period_of). Progress moves
-- in the same transaction as what causes it (a purchase booked, a share approved); a task is
-- completed at most once per period: completed_at is set once, with the operation that paid
-- its reward (NULL when the task pays only a badge).
CREATE TABLE task_progress (
    member_id           INTEGER NOT NULL REFERENCES members (id),
    task_id             TEXT    NOT NULL,
    period              TEXT    NOT NULL,
    progress            INTEGER NOT NULL CHECK (progress >= 0),
    target              INTEGER NOT NULL CHECK (target > 0),
    completed_at        INTEGER,
    reward_operation_id INTEGER UNIQUE REFERENCES operations (id),
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (member_id, task_id, period),
    CHECK (reward_operation_id IS NULL OR completed_at IS NOT NULL)
) STRICT, WITHOUT ROWID;

-- A completion is final: neither undone nor moved to another reward.
CREATE TRIGGER task_progress_completed_once BEFORE UPDATE OF completed_at, reward_operation_id
    ON task_progress
WHEN OLD.completed_at IS NOT NULL
    AND (NEW.completed_at IS NOT OLD.completed_at
         OR NEW.reward_operation_id IS NOT OLD.reward_operation_id)
BEGIN
    SELECT RAISE(ABORT, 'a task completion is final');
END;

CREATE TRIGGER task_progress_no_delete BEFORE DELETE ON task_progress
BEGIN
    SELECT RAISE(ABORT, 'task progress is kept');
END;
