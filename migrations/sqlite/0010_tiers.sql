-- Tiers by rolling 12-month activity (docs/loyalty.md). A tier qualifies a member by confirmed
-- spend (the sum of G) or by confirmed purchases in the 365 days before the recompute; the
-- member holds the highest-ranked tier they qualify for, and never less than the tier their
-- card was given by import or the operator (that tier is a floor). A tier with neither
-- threshold is given only by hand.
ALTER TABLE tiers ADD COLUMN rank INTEGER NOT NULL DEFAULT 0 CHECK (rank BETWEEN 0 AND 1000);
ALTER TABLE tiers ADD COLUMN spend_rials_min INTEGER CHECK (spend_rials_min >= 0);
ALTER TABLE tiers ADD COLUMN purchases_min INTEGER CHECK (purchases_min > 0);

-- The tier each member's activity earned at their last recompute (a confirm or a reversal of
-- one); tier_id is NULL when it earned none. A member without a row was never recomputed.
CREATE TABLE member_tiers (
    member_id INTEGER NOT NULL PRIMARY KEY REFERENCES members(id),
    tier_id INTEGER REFERENCES tiers(id),
    txn_id INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    change_seq INTEGER NOT NULL DEFAULT 0
);

-- Every promotion and demotion of a member's tier (the floor included), with the
-- transaction whose confirm or reversal caused it.
CREATE TABLE tier_changes (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    from_tier_id INTEGER REFERENCES tiers(id),
    to_tier_id INTEGER REFERENCES tiers(id),
    txn_id INTEGER NOT NULL,
    cause TEXT NOT NULL CHECK (cause IN ('confirm', 'reversal')),
    at_ms INTEGER NOT NULL,
    UNIQUE (txn_id, cause)
);
CREATE INDEX tier_changes_member ON tier_changes (member_id, at_ms);
