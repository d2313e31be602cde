-- SMS surveys after a purchase (docs/surveys.md). The operator defines one survey per
-- merchant; the survey scheduler (a task beside the committer, never the group commit) turns
-- a confirmed purchase whose delay has passed into one survey request and one outbox row;
-- the SMS gateway posts the member's replies to the operator API, each recorded once by the
-- gateway's message id, and a parsed reply becomes the request's one response.
CREATE TABLE surveys (
    merchant_id INTEGER NOT NULL PRIMARY KEY REFERENCES merchants(id),
    question_fa TEXT,
    question_en TEXT,
    scale_min INTEGER NOT NULL CHECK (scale_min >= 0),
    scale_max INTEGER NOT NULL CHECK (scale_max <= 10),
    comment_prompt_fa TEXT,
    comment_prompt_en TEXT,
    delay_minutes INTEGER NOT NULL CHECK (delay_minutes BETWEEN 0 AND 10080),
    surveys_max INTEGER NOT NULL CHECK (surveys_max BETWEEN 1 AND 100),
    period_days INTEGER NOT NULL CHECK (period_days BETWEEN 1 AND 366),
    active INTEGER NOT NULL CHECK (active IN (0, 1)),
    active_from_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    operator TEXT NOT NULL,
    CHECK (scale_min < scale_max),
    CHECK (question_fa IS NOT NULL OR question_en IS NOT NULL)
);

-- One row per confirmed purchase the scheduler considered for a survey: 'capped' when the
-- member had had as many as the cap allows (no message), else the survey it sent and what
-- became of it. The scale is the survey's when it was sent, so a later edit cannot make an
-- answer out of range.
CREATE TABLE survey_requests (
    id INTEGER PRIMARY KEY,
    txn_id INTEGER NOT NULL UNIQUE REFERENCES transactions(id),
    member_id INTEGER NOT NULL REFERENCES members(id),
    merchant_id INTEGER NOT NULL REFERENCES merchants(id),
    state TEXT NOT NULL CHECK (state IN ('capped', 'sent', 'clarifying', 'answered', 'unparsed')),
    scale_min INTEGER NOT NULL,
    scale_max INTEGER NOT NULL,
    notification_id INTEGER REFERENCES notifications(id),
    scheduled_at_ms INTEGER NOT NULL,
    closed_at_ms INTEGER,
    CHECK ((state = 'capped') = (notification_id IS NULL))
);
-- The cap: a member's requests at a merchant, newest first.
CREATE INDEX survey_requests_member ON survey_requests (member_id, merchant_id, scheduled_at_ms);
-- The report: a merchant's requests by when they were sent.
CREATE INDEX survey_requests_merchant ON survey_requests (merchant_id, scheduled_at_ms);

-- The scheduler's one row: its first statement locks it (so two processes on one database
-- schedule one after the other and the cap holds), and txn_id_floor is the transaction id
-- below which every capture is too old to be surveyed, so a pass reads only recent captures.
CREATE TABLE survey_scheduler (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    txn_id_floor INTEGER NOT NULL,
    ran_at_ms INTEGER NOT NULL
);
INSERT INTO survey_scheduler (id, txn_id_floor, ran_at_ms) VALUES (1, 0, 0);

-- Every authenticated message the gateway posted, once per gateway message id: a repeated
-- post finds its row and changes nothing. The phone is kept masked; the text only when the
-- message was matched to a member's survey.
CREATE TABLE sms_inbound (
    message_id TEXT NOT NULL PRIMARY KEY CHECK (length(message_id) BETWEEN 1 AND 128),
    phone_masked TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    gateway_received_at TEXT,
    member_id INTEGER REFERENCES members(id),
    request_id INTEGER REFERENCES survey_requests(id),
    outcome TEXT NOT NULL CHECK (outcome IN ('answered', 'clarify', 'unparsed', 'unmatched', 'late')),
    body TEXT
);

-- A request's one response: a score (and the comment after it), or the text of a reply that
-- still did not parse after the clarifying message (score NULL).
CREATE TABLE survey_responses (
    request_id INTEGER NOT NULL PRIMARY KEY REFERENCES survey_requests(id),
    member_id INTEGER NOT NULL REFERENCES members(id),
    merchant_id INTEGER NOT NULL REFERENCES merchants(id),
    txn_id INTEGER NOT NULL REFERENCES transactions(id),
    message_id TEXT NOT NULL REFERENCES sms_inbound(message_id),
    score INTEGER,
    comment TEXT,
    unparsed_text TEXT,
    answered_at_ms INTEGER NOT NULL,
    CHECK ((score IS NULL) = (unparsed_text IS NOT NULL))
);
CREATE INDEX survey_responses_merchant ON survey_responses (merchant_id, answered_at_ms);
