-- The operator console (docs/console.md): passwords, merchant-scoped operators, the language
-- each operator reads, sessions, and the history of the reference terms that price a
-- purchase, so a transaction's explanation reads the terms of the version that priced it.

-- A password is kept only as its Argon2id PHC string. An operator with a merchant_code is a
-- merchant operator: the console shows them that merchant's data only, and the API refuses
-- their token. locale: 'en' (Gregorian, left to right) or 'fa' (Solar Hijri, right to left).
ALTER TABLE operator_tokens ADD COLUMN password_phc TEXT;
ALTER TABLE operator_tokens ADD COLUMN merchant_code TEXT;
ALTER TABLE operator_tokens ADD COLUMN locale TEXT NOT NULL DEFAULT 'en' CHECK (locale IN ('en', 'fa'));
ALTER TABLE operator_tokens ADD COLUMN show_toman INTEGER NOT NULL DEFAULT 0 CHECK (show_toman IN (0, 1));

-- A console session: the cookie's SHA-256 only, the CSRF token every form carries, expiry.
CREATE TABLE console_sessions (
    session_sha256 BLOB NOT NULL PRIMARY KEY CHECK (length(session_sha256) = 32),
    operator TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at_ms);

-- Reference data is edited in place; these tables keep every version of the terms that price
-- a purchase. A row is written (version NULL) by the triggers below when its record is
-- inserted or changed, and stamped with the reference version when the change's transaction
-- bumps reference_meta. The terms a transaction was priced with are those of the newest row
-- whose version is at most the transaction's snapshot_version. Rows present when this
-- migration ran are recorded as version 0.
CREATE TABLE rule_terms_history (
    id INTEGER PRIMARY KEY,
    rule_id INTEGER NOT NULL,
    version INTEGER,
    name TEXT NOT NULL,
    percent TEXT,
    fixed_rials INTEGER,
    basket_rials_min INTEGER NOT NULL,
    discount_rials_max INTEGER
);
CREATE INDEX rule_terms_history_rule ON rule_terms_history (rule_id, version);
CREATE INDEX rule_terms_history_unstamped ON rule_terms_history (version) WHERE version IS NULL;

CREATE TABLE merchant_terms_history (
    id INTEGER PRIMARY KEY,
    merchant_id INTEGER NOT NULL,
    version INTEGER,
    fee_rate TEXT NOT NULL,
    fee_rials_min INTEGER NOT NULL,
    fee_rials_max INTEGER NOT NULL,
    cashback_allowed INTEGER NOT NULL
);
CREATE INDEX merchant_terms_history_merchant ON merchant_terms_history (merchant_id, version);
CREATE INDEX merchant_terms_history_unstamped ON merchant_terms_history (version) WHERE version IS NULL;

CREATE TABLE tier_terms_history (
    id INTEGER PRIMARY KEY,
    tier_id INTEGER NOT NULL,
    version INTEGER,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    cashback_rate TEXT NOT NULL,
    rank INTEGER NOT NULL
);
CREATE INDEX tier_terms_history_tier ON tier_terms_history (tier_id, version);
CREATE INDEX tier_terms_history_unstamped ON tier_terms_history (version) WHERE version IS NULL;

-- A card's given tier before each change of it: the tier it had at version v is the old tier
-- of its first change after v, or its current tier when it has none.
CREATE TABLE card_tier_history (
    id INTEGER PRIMARY KEY,
    card_id INTEGER NOT NULL,
    version INTEGER,
    old_tier_id INTEGER
);
CREATE INDEX card_tier_history_card ON card_tier_history (card_id, version);
CREATE INDEX card_tier_history_unstamped ON card_tier_history (version) WHERE version IS NULL;

INSERT INTO rule_terms_history (rule_id, version, name, percent, fixed_rials, basket_rials_min, discount_rials_max)
    SELECT id, 0, name, percent, fixed_rials, basket_rials_min, discount_rials_max FROM rules;
INSERT INTO merchant_terms_history (merchant_id, version, fee_rate, fee_rials_min, fee_rials_max, cashback_allowed)
    SELECT id, 0, fee_rate, fee_rials_min, fee_rials_max, cashback_allowed FROM merchants;
INSERT INTO tier_terms_history (tier_id, version, code, name, cashback_rate, rank)
    SELECT id, 0, code, name, cashback_rate, rank FROM tiers;

CREATE TRIGGER rules_history_insert AFTER INSERT ON rules BEGIN
    INSERT INTO rule_terms_history (rule_id, version, name, percent, fixed_rials, basket_rials_min, discount_rials_max)
    VALUES (NEW.id, NULL, NEW.name, NEW.percent, NEW.fixed_rials, NEW.basket_rials_min, NEW.discount_rials_max);
END;
CREATE TRIGGER rules_history_update AFTER UPDATE ON rules BEGIN
    INSERT INTO rule_terms_history (rule_id, version, name, percent, fixed_rials, basket_rials_min, discount_rials_max)
    VALUES (NEW.id, NULL, NEW.name, NEW.percent, NEW.fixed_rials, NEW.basket_rials_min, NEW.discount_rials_max);
END;
CREATE TRIGGER merchants_history_insert AFTER INSERT ON merchants BEGIN
    INSERT INTO merchant_terms_history (merchant_id, version, fee_rate, fee_rials_min, fee_rials_max, cashback_allowed)
    VALUES (NEW.id, NULL, NEW.fee_rate, NEW.fee_rials_min, NEW.fee_rials_max, NEW.cashback_allowed);
END;
CREATE TRIGGER merchants_history_update AFTER UPDATE ON merchants BEGIN
    INSERT INTO merchant_terms_history (merchant_id, version, fee_rate, fee_rials_min, fee_rials_max, cashback_allowed)
    VALUES (NEW.id, NULL, NEW.fee_rate, NEW.fee_rials_min, NEW.fee_rials_max, NEW.cashback_allowed);
END;
CREATE TRIGGER tiers_history_insert AFTER INSERT ON tiers BEGIN
    INSERT INTO tier_terms_history (tier_id, version, code, name, cashback_rate, rank)
    VALUES (NEW.id, NULL, NEW.code, NEW.name, NEW.cashback_rate, NEW.rank);
END;
CREATE TRIGGER tiers_history_update AFTER UPDATE ON tiers BEGIN
    INSERT INTO tier_terms_history (tier_id, version, code, name, cashback_rate, rank)
    VALUES (NEW.id, NULL, NEW.code, NEW.name, NEW.cashback_rate, NEW.rank);
END;
CREATE TRIGGER cards_tier_history AFTER UPDATE OF tier_id ON cards
WHEN OLD.tier_id IS NOT NEW.tier_id BEGIN
    INSERT INTO card_tier_history (card_id, version, old_tier_id) VALUES (OLD.id, NULL, OLD.tier_id);
END;
CREATE TRIGGER reference_meta_stamp_insert AFTER INSERT ON reference_meta BEGIN
    UPDATE rule_terms_history SET version = NEW.version WHERE version IS NULL;
    UPDATE merchant_terms_history SET version = NEW.version WHERE version IS NULL;
    UPDATE tier_terms_history SET version = NEW.version WHERE version IS NULL;
    UPDATE card_tier_history SET version = NEW.version WHERE version IS NULL;
END;
CREATE TRIGGER reference_meta_stamp_update AFTER UPDATE ON reference_meta BEGIN
    UPDATE rule_terms_history SET version = NEW.version WHERE version IS NULL;
    UPDATE merchant_terms_history SET version = NEW.version WHERE version IS NULL;
    UPDATE tier_terms_history SET version = NEW.version WHERE version IS NULL;
    UPDATE card_tier_history SET version = NEW.version WHERE version IS NULL;
END;
