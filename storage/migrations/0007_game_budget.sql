-- The prize points all members won on each local day, kept by a trigger with every play:
-- checking the daily budget reads one row instead of summing every play of the day, which
-- grew with each spin of a busy day.
CREATE TABLE game_day_budget (
    local_day    TEXT    PRIMARY KEY,
    prize_points INTEGER NOT NULL CHECK (prize_points >= 0)
) STRICT, WITHOUT ROWID;

INSERT INTO game_day_budget (local_day, prize_points)
    SELECT local_day, sum(prize_points) FROM game_plays GROUP BY local_day;

-- Plays are never deleted and their prize never changes (0004_games.sql), so counting each
-- insert is the whole story.
CREATE TRIGGER game_plays_count_budget AFTER INSERT ON game_plays
BEGIN
    INSERT INTO game_day_budget (local_day, prize_points)
        VALUES (NEW.local_day, NEW.prize_points)
        ON CONFLICT (local_day) DO UPDATE SET prize_points = prize_points + excluded.prize_points;
END;

CREATE TRIGGER game_day_budget_no_delete BEFORE DELETE ON game_day_budget
BEGIN
    SELECT RAISE(ABORT, 'a day''s prize total is never deleted');
END;
