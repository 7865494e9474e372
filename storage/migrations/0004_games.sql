-- The points games: the wheel (积分转盘) and the scratch card (积分刮刮乐) (storage/games.py).
-- Every point a game moves is a ledger operation keyed by the play's offer
-- ('game:<offer>:cost', 'game:<offer>:prize'); these tables say what was played, what it cost
-- and what it won. Times are Unix seconds; local_day is the programme's day ('YYYY-MM-DD'),
-- decided by the caller, for the daily limits and the daily prize budget.

-- A pending play: the Spin / Buy button carries its id (DESIGN.md "Keys from Telegram"), so
-- a double tap or a redelivered update plays at most once. cost is what the button promised.
CREATE TABLE game_offers (
    id         INTEGER PRIMARY KEY,
    member_id  INTEGER NOT NULL REFERENCES members (id),
    game       TEXT    NOT NULL CHECK (game IN ('wheel', 'scratch')),
    cost       INTEGER NOT NULL CHECK (cost >= 0),
    local_day  TEXT    NOT NULL CHECK (local_day GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    CHECK (expires_at > created_at)
) STRICT;

-- One spin or one scratch card. The prize is fixed when the row is written (a wheel is
-- revealed at once; a card when enough cells are scratched) and paid exactly when revealed.
CREATE TABLE game_plays (
    id                 INTEGER PRIMARY KEY,
    offer_id           INTEGER NOT NULL UNIQUE REFERENCES game_offers (id),
    member_id          INTEGER NOT NULL REFERENCES members (id),
    game               TEXT    NOT NULL CHECK (game IN ('wheel', 'scratch')),
    local_day          TEXT    NOT NULL,
    -- 0 for a free play, which spends nothing.
    cost               INTEGER NOT NULL CHECK (cost >= 0),
    cost_operation_id  INTEGER UNIQUE REFERENCES operations (id),
    -- What the draw picked, and what the member got (the fallback when the budget ran out).
    drawn_prize_id     TEXT    NOT NULL,
    prize_id           TEXT    NOT NULL,
    prize_kind         TEXT    NOT NULL CHECK (prize_kind IN ('points', 'voucher', 'nothing')),
    -- Points won (campaign multiplier included); they count against the day's budget.
    prize_points       INTEGER NOT NULL CHECK (prize_points >= 0),
    budget_fallback    INTEGER NOT NULL CHECK (budget_fallback IN (0, 1)),
    campaign           TEXT,
    prize_operation_id INTEGER UNIQUE REFERENCES operations (id),
    -- A scratch card's nine symbols (a JSON array) and the cells scratched so far (bit i =
    -- cell i); NULL and 0 for a wheel.
    layout             TEXT    CHECK (layout IS NULL OR json_valid(layout)),
    scratched          INTEGER NOT NULL DEFAULT 0 CHECK (scratched BETWEEN 0 AND 511),
    created_at         INTEGER NOT NULL,
    revealed_at        INTEGER,
    CHECK ((cost = 0) = (cost_operation_id IS NULL)),
    CHECK ((prize_kind = 'points') = (prize_points > 0)),
    CHECK (budget_fallback = 0 OR prize_id <> drawn_prize_id),
    -- A points prize is paid exactly when the play is revealed, and only a points prize.
    CHECK ((prize_operation_id IS NOT NULL) = (prize_kind = 'points' AND revealed_at IS NOT NULL)),
    CHECK ((game = 'scratch') = (layout IS NOT NULL)),
    CHECK (game = 'scratch' OR (revealed_at IS NOT NULL AND scratched = 0))
) STRICT;

-- Today's plays of a member (the daily limit and free plays).
CREATE INDEX game_plays_by_member_day ON game_plays (member_id, game, local_day);
-- Today's prizes of everyone (the daily budget).
CREATE INDEX game_plays_by_day ON game_plays (local_day);
-- Cards bought and not yet revealed.
CREATE INDEX game_plays_unrevealed ON game_plays (member_id, id) WHERE revealed_at IS NULL;

-- A voucher prize: a code (and its QR) the member shows at the till; staff mark it used.
CREATE TABLE game_vouchers (
    id         INTEGER PRIMARY KEY,
    code       TEXT    NOT NULL UNIQUE CHECK (length(code) = 8),
    play_id    INTEGER NOT NULL UNIQUE REFERENCES game_plays (id),
    member_id  INTEGER NOT NULL REFERENCES members (id),
    prize_id   TEXT    NOT NULL,
    status     TEXT    NOT NULL DEFAULT 'issued' CHECK (status IN ('issued', 'used')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    TEXT,
    CHECK (expires_at > created_at),
    CHECK ((status = 'used') = (used_at IS NOT NULL)),
    CHECK ((status = 'used') = (used_by IS NOT NULL))
) STRICT;

CREATE INDEX game_vouchers_by_member ON game_vouchers (member_id, id);

CREATE TRIGGER game_offers_fixed BEFORE UPDATE ON game_offers
BEGIN
    SELECT RAISE(ABORT, 'a game offer never changes');
END;

CREATE TRIGGER game_offers_no_delete BEFORE DELETE ON game_offers
BEGIN
    SELECT RAISE(ABORT, 'game offers are never deleted');
END;

CREATE TRIGGER game_plays_fixed_identity
    BEFORE UPDATE OF id, offer_id, member_id, game, local_day, cost, cost_operation_id,
        drawn_prize_id, prize_id, prize_kind, prize_points, budget_fallback, campaign, layout,
        created_at ON game_plays
BEGIN
    SELECT RAISE(ABORT, 'a play never changes what was paid or won');
END;

-- Scratching only uncovers more cells, and only until the card is revealed; a reveal and its
-- payment happen once.
CREATE TRIGGER game_plays_scratch_forward
    BEFORE UPDATE OF scratched, revealed_at, prize_operation_id ON game_plays
WHEN OLD.revealed_at IS NOT NULL
    OR (NEW.scratched & OLD.scratched) <> OLD.scratched
    OR OLD.prize_operation_id IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a revealed play is final and scratched cells stay scratched');
END;

CREATE TRIGGER game_plays_no_delete BEFORE DELETE ON game_plays
BEGIN
    SELECT RAISE(ABORT, 'game plays are never deleted');
END;

CREATE TRIGGER game_vouchers_fixed_identity
    BEFORE UPDATE OF id, code, play_id, member_id, prize_id, created_at, expires_at
    ON game_vouchers
BEGIN
    SELECT RAISE(ABORT, 'a prize voucher never changes what it is');
END;

CREATE TRIGGER game_vouchers_used_once BEFORE UPDATE OF status, used_at, used_by ON game_vouchers
WHEN OLD.status <> 'issued'
BEGIN
    SELECT RAISE(ABORT, 'a prize voucher is used once');
END;

CREATE TRIGGER game_vouchers_no_delete BEFORE DELETE ON game_vouchers
BEGIN
    SELECT RAISE(ABORT, 'prize vouchers are never deleted');
END;
