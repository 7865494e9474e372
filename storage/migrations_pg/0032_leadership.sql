-- Who leads: the process holding the advisory lock fetches updates, runs the scheduled jobs
-- and drains the outbox. Each new leader bumps the epoch; the writes only a leader makes (a
-- fetched batch journaled, a push handed to Telegram, a job's day claimed) check it in their
-- own transaction (bot/leader.py).
CREATE TABLE leadership (
    id     BIGINT PRIMARY KEY CHECK (id = 1),
    epoch  BIGINT NOT NULL CHECK (epoch > 0),
    holder TEXT   NOT NULL,
    since  BIGINT NOT NULL
);

-- Each scheduled job's tick (its local day, or the leadership a catch-up ran for) is claimed
-- by one leader before it starts, in the transaction that checks the epoch.
CREATE TABLE job_ticks (
    job        TEXT   NOT NULL,
    tick       TEXT   NOT NULL,
    epoch      BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (job, tick)
);
