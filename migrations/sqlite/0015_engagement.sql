-- Member engagement (docs/campaigns.md): custom tags, segments over tags, tiers and RFM scores,
-- operator-defined occasions, occasion campaigns and repurchase reminders. None of it is read
-- by the switch's hot path; the engagement job and the operator API write it.

-- A tag the operator defines; `rule` (JSON, docs/campaigns.md) makes it assigned by rule too.
CREATE TABLE tags (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 32),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    rule TEXT,
    updated_at_ms INTEGER NOT NULL,
    operator TEXT NOT NULL
);

-- Which members carry which tag, and how it came: by hand, by file, or by the tag's rule (a rule
-- run removes only what a rule added).
CREATE TABLE member_tags (
    member_id INTEGER NOT NULL REFERENCES members(id),
    tag_id INTEGER NOT NULL REFERENCES tags(id),
    source TEXT NOT NULL CHECK (source IN ('manual', 'file', 'rule')),
    assigned_at_ms INTEGER NOT NULL,
    operator TEXT NOT NULL,
    PRIMARY KEY (member_id, tag_id)
);
CREATE INDEX member_tags_tag ON member_tags (tag_id);

-- A segment: a boolean expression (JSON) over tags, tier and RFM scores.
CREATE TABLE segments (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 32),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    expression TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    operator TEXT NOT NULL
);

-- Operator-defined events with a date window (Tehran days, inclusive). National holidays come
-- from the settlement calendar file, birthdays and anniversaries from the members.
CREATE TABLE occasions (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 32),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    starts_on TEXT NOT NULL CHECK (length(starts_on) = 10),
    ends_on TEXT NOT NULL CHECK (length(ends_on) = 10),
    updated_at_ms INTEGER NOT NULL,
    operator TEXT NOT NULL,
    CHECK (starts_on <= ends_on)
);

-- A campaign: a segment, an optional occasion, a coupon and/or an SMS, run once within its
-- window. `coupon` is the coupon's terms as JSON.
CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 32),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    segment_id INTEGER NOT NULL REFERENCES segments(id),
    occasion TEXT,
    starts_on TEXT NOT NULL CHECK (length(starts_on) = 10),
    ends_on TEXT NOT NULL CHECK (length(ends_on) = 10),
    coupon TEXT,
    sms_fa TEXT,
    sms_en TEXT,
    state TEXT NOT NULL CHECK (state IN ('scheduled', 'running', 'done')),
    started_at_ms INTEGER,
    done_at_ms INTEGER,
    updated_at_ms INTEGER NOT NULL,
    operator TEXT NOT NULL,
    CHECK (starts_on <= ends_on),
    CHECK (coupon IS NOT NULL OR sms_fa IS NOT NULL OR sms_en IS NOT NULL)
);

-- One row per member a campaign reached: the primary key is what makes a second run (or a run
-- resumed after a crash) reach nobody twice; the coupon and message keys are
-- 'campaign:<code>:<member id>'.
CREATE TABLE campaign_members (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    member_id INTEGER NOT NULL REFERENCES members(id),
    coupon_id INTEGER REFERENCES coupons(id),
    notification_id INTEGER REFERENCES notifications(id),
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, member_id)
);

-- Repurchase reminders of a merchant: members whose last confirmed purchase there is more than
-- `days` days old get one reminder per period of `period_days` days.
CREATE TABLE reminders (
    merchant_id INTEGER NOT NULL PRIMARY KEY REFERENCES merchants(id),
    days INTEGER NOT NULL CHECK (days BETWEEN 1 AND 3650),
    period_days INTEGER NOT NULL CHECK (period_days BETWEEN 1 AND 366),
    text_fa TEXT,
    text_en TEXT,
    active INTEGER NOT NULL CHECK (active IN (0, 1)),
    updated_at_ms INTEGER NOT NULL,
    operator TEXT NOT NULL,
    CHECK (text_fa IS NOT NULL OR text_en IS NOT NULL)
);

-- One row per reminder sent: (merchant, member, period) once.
CREATE TABLE reminders_sent (
    merchant_id INTEGER NOT NULL REFERENCES merchants(id),
    member_id INTEGER NOT NULL REFERENCES members(id),
    period INTEGER NOT NULL,
    notification_id INTEGER NOT NULL REFERENCES notifications(id),
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (merchant_id, member_id, period)
);

-- A member's cards: segments and campaigns read every member with their lowest active card
-- (the card their messages go by), as do the coupon routes.
CREATE INDEX cards_member ON cards (member_id);
