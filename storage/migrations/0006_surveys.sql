-- Reward surveys (积分权益问卷, satisfaction surveys), rewarded suggestions, and the state of
-- members' conversations (storage/surveys.py, storage/persistence.py). Times are Unix seconds.

-- A member's response to one survey, at most one per member and survey. It is answered one
-- question at a time (position = the question being asked) and completed once: completing
-- sets position = questions, and a reward is the ledger operation keyed
-- 'survey:<member>:<survey>' written in the same transaction.
CREATE TABLE survey_responses (
    id                  INTEGER PRIMARY KEY,
    survey_id           TEXT    NOT NULL,
    member_id           INTEGER NOT NULL REFERENCES members (id),
    -- A hash of the questions as the member was asked them: a survey changed meanwhile
    -- starts over rather than mixing two versions in one response.
    definition          TEXT    NOT NULL,
    questions           INTEGER NOT NULL CHECK (questions > 0),
    position            INTEGER NOT NULL DEFAULT 0 CHECK (position >= 0),
    started_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    completed_at        INTEGER,
    reward_points       INTEGER NOT NULL DEFAULT 0 CHECK (reward_points >= 0),
    reward_operation_id INTEGER UNIQUE REFERENCES operations (id),
    UNIQUE (member_id, survey_id),
    CHECK (position <= questions),
    CHECK ((completed_at IS NOT NULL) = (position = questions)),
    CHECK (completed_at IS NOT NULL OR reward_points = 0),
    CHECK ((reward_operation_id IS NOT NULL) = (reward_points > 0))
) STRICT;

-- The survey a member is answering now: their most recently touched open response.
CREATE INDEX survey_responses_open ON survey_responses (member_id, updated_at)
    WHERE completed_at IS NULL;
-- A survey's results.
CREATE INDEX survey_responses_by_survey ON survey_responses (survey_id, completed_at);

-- One answer per response and question, kept as the member goes (a restart loses none).
-- 'draft' is a multiple-choice question whose boxes are ticked but not confirmed with Done.
CREATE TABLE survey_answers (
    response_id INTEGER NOT NULL REFERENCES survey_responses (id),
    question_id TEXT    NOT NULL,
    position    INTEGER NOT NULL CHECK (position >= 0),
    kind        TEXT    NOT NULL CHECK (kind IN ('single', 'multiple', 'rating', 'text')),
    status      TEXT    NOT NULL CHECK (status IN ('draft', 'answered', 'skipped')),
    -- Option ids (a JSON array) of a choice question.
    choices     TEXT    CHECK (choices IS NULL OR json_valid(choices)),
    rating      INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
    text        TEXT,
    -- The Telegram message a text answer came from: redelivered, it answers nothing more.
    source      TEXT,
    answered_at INTEGER NOT NULL,
    PRIMARY KEY (response_id, question_id),
    UNIQUE (response_id, position),
    CHECK (status <> 'draft' OR kind = 'multiple'),
    CHECK (status <> 'skipped' OR (choices IS NULL AND rating IS NULL AND text IS NULL)),
    CHECK (status = 'skipped' OR (
        (kind IN ('single', 'multiple')) = (choices IS NOT NULL)
        AND (kind = 'rating') = (rating IS NOT NULL)
        AND (kind = 'text') = (text IS NOT NULL)
    ))
) STRICT;

CREATE TRIGGER survey_responses_completed_final BEFORE UPDATE ON survey_responses
WHEN OLD.completed_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a completed survey response is final');
END;

CREATE TRIGGER survey_responses_fixed_identity
    BEFORE UPDATE OF id, survey_id, member_id ON survey_responses
BEGIN
    SELECT RAISE(ABORT, 'a survey response never changes whose or which survey it is');
END;

CREATE TRIGGER survey_responses_no_delete BEFORE DELETE ON survey_responses
BEGIN
    SELECT RAISE(ABORT, 'survey responses are never deleted');
END;

CREATE TRIGGER survey_answers_final_insert BEFORE INSERT ON survey_answers
WHEN (SELECT completed_at FROM survey_responses WHERE id = NEW.response_id) IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'the answers of a completed survey response are final');
END;

CREATE TRIGGER survey_answers_final_update BEFORE UPDATE ON survey_answers
WHEN (SELECT completed_at FROM survey_responses WHERE id = OLD.response_id) IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'the answers of a completed survey response are final');
END;

CREATE TRIGGER survey_answers_final_delete BEFORE DELETE ON survey_answers
WHEN (SELECT completed_at FROM survey_responses WHERE id = OLD.response_id) IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'the answers of a completed survey response are final');
END;

-- A member's suggestion (/feedback). It earns points only when an operator approves it: one
-- ledger operation keyed 'feedback:<id>', in the same transaction as the decision.
CREATE TABLE feedback (
    id                  INTEGER PRIMARY KEY,
    member_id           INTEGER NOT NULL REFERENCES members (id),
    -- The Telegram message it came from: a redelivered update files nothing new.
    source              TEXT    NOT NULL UNIQUE,
    text                TEXT    NOT NULL CHECK (length(text) > 0),
    -- The programme's day it was sent ('YYYY-MM-DD'), for the daily limit.
    local_day           TEXT    NOT NULL
                        CHECK (local_day GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    created_at          INTEGER NOT NULL,
    status              TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'approved', 'rejected')),
    reviewed_at         INTEGER,
    reviewed_by         TEXT,
    reward_points       INTEGER NOT NULL DEFAULT 0 CHECK (reward_points >= 0),
    reward_operation_id INTEGER UNIQUE REFERENCES operations (id),
    CHECK ((status = 'pending') = (reviewed_at IS NULL)),
    CHECK ((status = 'pending') = (reviewed_by IS NULL)),
    CHECK (status = 'approved' OR reward_points = 0),
    CHECK ((reward_operation_id IS NOT NULL) = (reward_points > 0))
) STRICT;

CREATE INDEX feedback_pending ON feedback (id) WHERE status = 'pending';
CREATE INDEX feedback_by_member_day ON feedback (member_id, local_day);

CREATE TRIGGER feedback_fixed_identity
    BEFORE UPDATE OF id, member_id, source, text, local_day, created_at ON feedback
BEGIN
    SELECT RAISE(ABORT, 'a suggestion never changes what was sent');
END;

CREATE TRIGGER feedback_decided_once BEFORE UPDATE OF status, reviewed_at, reviewed_by,
    reward_points, reward_operation_id ON feedback
WHEN OLD.status <> 'pending'
BEGIN
    SELECT RAISE(ABORT, 'a suggestion is approved or rejected once');
END;

CREATE TRIGGER feedback_no_delete BEFORE DELETE ON feedback
BEGIN
    SELECT RAISE(ABORT, 'suggestions are never deleted');
END;

-- python-telegram-bot's ConversationHandler states (bot/persistence.py): which question of
-- which conversation each chat is in, so a restart continues where the member was. Keys and
-- states are JSON.
CREATE TABLE conversations (
    name       TEXT    NOT NULL,
    key        TEXT    NOT NULL CHECK (json_valid(key)),
    state      TEXT    NOT NULL CHECK (json_valid(state)),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (name, key)
) STRICT;
