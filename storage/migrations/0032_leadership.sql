-- Who leads: the process that fetches updates, runs the scheduled jobs and drains the outbox.
-- Each new leader bumps the epoch; the writes only a leader makes (a fetched batch journaled,
-- a push handed to Telegram, a job's day claimed) check it in their own transaction, so a
-- leader that lost its place without knowing it (paused, cut off) changes nothing after a
-- new one took over (bot/leader.py).
CREATE TABLE leadership (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    epoch  INTEGER NOT NULL CHECK (epoch > 0),
    holder TEXT    NOT NULL,
    since  INTEGER NOT NULL
) STRICT;

-- Each scheduled job's tick (its local day, or the leadership a catch-up ran for) is claimed
-- by one leader before it starts, in the transaction that checks the epoch: never run twice,
-- never in two processes. A leader killed during a job leaves its tick claimed and its day
-- unfinished in job_runs: the next leader's catch-up does what is left.
CREATE TABLE job_ticks (
    job        TEXT    NOT NULL,
    tick       TEXT    NOT NULL,
    epoch      INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    PRIMARY KEY (job, tick)
) STRICT;
