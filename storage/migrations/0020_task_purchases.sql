-- Purchase-driven tasks (issue 21: purchases, spend, streak). Times are Unix seconds.

-- What each booked purchase added to each task: the one record that a purchase counted (the
-- primary key refuses counting one operation twice for a task) and what a return takes back.
-- delta is purchases (1) or counted yuan; for a streak task, 1 and the ISO week it counted.
CREATE TABLE task_purchase_moves (
    operation_id INTEGER NOT NULL REFERENCES operations (id),
    task_id      TEXT    NOT NULL,
    member_id    INTEGER NOT NULL REFERENCES members (id),
    period       TEXT    NOT NULL,
    delta        INTEGER NOT NULL CHECK (delta > 0),
    week         TEXT,
    -- When a return took the progress back (once).
    withdrawn_at INTEGER,
    PRIMARY KEY (operation_id, task_id)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER task_purchase_moves_withdrawn_once BEFORE UPDATE ON task_purchase_moves
WHEN OLD.withdrawn_at IS NOT NULL
    OR NEW.operation_id IS NOT OLD.operation_id OR NEW.task_id IS NOT OLD.task_id
    OR NEW.member_id IS NOT OLD.member_id OR NEW.period IS NOT OLD.period
    OR NEW.delta IS NOT OLD.delta OR NEW.week IS NOT OLD.week
BEGIN
    SELECT RAISE(ABORT, 'a purchase move is withdrawn at most once, and otherwise kept');
END;

CREATE TRIGGER task_purchase_moves_no_delete BEFORE DELETE ON task_purchase_moves
BEGIN
    SELECT RAISE(ABORT, 'purchase moves are kept');
END;

-- The ISO weeks in which a member made a purchase counting for a streak task, with how many
-- such purchases are not returned: a week counts while purchases > 0.
CREATE TABLE task_streak_weeks (
    member_id INTEGER NOT NULL REFERENCES members (id),
    task_id   TEXT    NOT NULL,
    period    TEXT    NOT NULL,
    week      TEXT    NOT NULL,
    purchases INTEGER NOT NULL CHECK (purchases >= 0),
    PRIMARY KEY (task_id, period, member_id, week)
) STRICT, WITHOUT ROWID;
