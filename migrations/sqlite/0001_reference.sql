-- Reference data and balances (DESIGN.md section 3). Money columns are integer rials; rates are
-- decimal text (exact). No PAN and no clear TMK is ever stored: cards keep an HMAC token, BIN
-- and last 4; terminals keep their TMK sealed under the key-encryption key.

-- One version counter for the whole reference data, bumped by each import that changed
-- something; the snapshot and every priced transaction carry it.
CREATE TABLE reference_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    imported_at_ms INTEGER NOT NULL,
    file_sha256 TEXT NOT NULL
);

CREATE TABLE tiers (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    cashback_rate TEXT NOT NULL
);

-- Merchant, member and terminal groups share one id space, so a group id never means two things.
CREATE TABLE groups (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('merchant', 'member', 'terminal')),
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (kind, code)
);

CREATE TABLE merchants (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    iban TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    currency INTEGER NOT NULL CHECK (currency BETWEEN 1 AND 999),
    fee_rate TEXT NOT NULL,
    fee_rials_min INTEGER NOT NULL CHECK (fee_rials_min >= 0),
    fee_rials_max INTEGER NOT NULL CHECK (fee_rials_max >= fee_rials_min),
    amount_rials_max INTEGER NOT NULL CHECK (amount_rials_max >= 0),
    cashback_allowed INTEGER NOT NULL CHECK (cashback_allowed IN (0, 1)),
    credit_expiry_days INTEGER NOT NULL CHECK (credit_expiry_days > 0),
    utc_offset_minutes INTEGER NOT NULL CHECK (utc_offset_minutes BETWEEN -720 AND 840)
);

CREATE TABLE merchant_group_members (
    group_id INTEGER NOT NULL REFERENCES groups(id),
    merchant_id INTEGER NOT NULL REFERENCES merchants(id),
    PRIMARY KEY (group_id, merchant_id)
);

CREATE TABLE terminals (
    id INTEGER PRIMARY KEY,
    terminal_id TEXT NOT NULL UNIQUE CHECK (length(terminal_id) = 8),
    ksi TEXT NOT NULL UNIQUE CHECK (length(ksi) = 16),
    merchant_id INTEGER NOT NULL REFERENCES merchants(id),
    status TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    -- 0x01 | nonce (12) | AES-256-GCM ciphertext (32) | tag (16), AAD = terminal_id.
    tmk_sealed BLOB NOT NULL CHECK (length(tmk_sealed) = 61)
);

CREATE TABLE terminal_group_members (
    group_id INTEGER NOT NULL REFERENCES groups(id),
    terminal_id INTEGER NOT NULL REFERENCES terminals(id),
    PRIMARY KEY (group_id, terminal_id)
);

CREATE TABLE members (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE
);

CREATE TABLE member_group_members (
    group_id INTEGER NOT NULL REFERENCES groups(id),
    member_id INTEGER NOT NULL REFERENCES members(id),
    PRIMARY KEY (group_id, member_id)
);

CREATE TABLE cards (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    member_id INTEGER NOT NULL REFERENCES members(id),
    pan_token BLOB NOT NULL UNIQUE CHECK (length(pan_token) = 32),
    bin TEXT NOT NULL CHECK (length(bin) = 6),
    last4 TEXT NOT NULL CHECK (length(last4) = 4),
    status TEXT NOT NULL CHECK (status IN ('active', 'blocked')),
    expiry_year INTEGER NOT NULL,
    expiry_month INTEGER NOT NULL CHECK (expiry_month BETWEEN 1 AND 12),
    tier_id INTEGER REFERENCES tiers(id)
);

-- Exactly one of percent and fixed_rials is set. Dates are local YYYY-MM-DD, minutes are local
-- minutes of the day, weekdays a mask (bit 0 Monday … bit 6 Sunday).
CREATE TABLE rules (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    percent TEXT,
    fixed_rials INTEGER CHECK (fixed_rials >= 0),
    basket_rials_min INTEGER NOT NULL CHECK (basket_rials_min >= 0),
    discount_rials_max INTEGER CHECK (discount_rials_max >= 0),
    valid_from TEXT,
    valid_until TEXT,
    weekdays INTEGER NOT NULL CHECK (weekdays BETWEEN 1 AND 127),
    minute_from INTEGER CHECK (minute_from BETWEEN 0 AND 1439),
    minute_until INTEGER CHECK (minute_until BETWEEN 0 AND 1439),
    budget_rials INTEGER CHECK (budget_rials >= 0),
    member_daily_uses_max INTEGER CHECK (member_daily_uses_max > 0),
    CHECK ((percent IS NULL) <> (fixed_rials IS NULL)),
    CHECK ((minute_from IS NULL) = (minute_until IS NULL))
);

-- Eligibility: an empty set means any.
CREATE TABLE rule_merchants (
    rule_id INTEGER NOT NULL REFERENCES rules(id),
    merchant_id INTEGER NOT NULL REFERENCES merchants(id),
    PRIMARY KEY (rule_id, merchant_id)
);

-- Merchant, member and terminal groups alike; the group's kind says which dimension.
CREATE TABLE rule_groups (
    rule_id INTEGER NOT NULL REFERENCES rules(id),
    group_id INTEGER NOT NULL REFERENCES groups(id),
    PRIMARY KEY (rule_id, group_id)
);

CREATE TABLE rule_tiers (
    rule_id INTEGER NOT NULL REFERENCES rules(id),
    tier_id INTEGER NOT NULL REFERENCES tiers(id),
    PRIMARY KEY (rule_id, tier_id)
);

-- Inclusive ranges of 6-digit BINs.
CREATE TABLE rule_bins (
    rule_id INTEGER NOT NULL REFERENCES rules(id),
    bin_low TEXT NOT NULL CHECK (length(bin_low) = 6),
    bin_high TEXT NOT NULL CHECK (length(bin_high) = 6 AND bin_high >= bin_low),
    PRIMARY KEY (rule_id, bin_low, bin_high)
);

-- Balances: available = ledger - held, and no balance goes below zero.
CREATE TABLE club_balances (
    card_id INTEGER PRIMARY KEY REFERENCES cards(id),
    ledger_rials INTEGER NOT NULL CHECK (ledger_rials >= 0),
    held_rials INTEGER NOT NULL DEFAULT 0 CHECK (held_rials >= 0),
    CHECK (held_rials <= ledger_rials)
);

CREATE TABLE store_credit_accounts (
    card_id INTEGER NOT NULL REFERENCES cards(id),
    merchant_id INTEGER NOT NULL REFERENCES merchants(id),
    ledger_rials INTEGER NOT NULL CHECK (ledger_rials >= 0),
    held_rials INTEGER NOT NULL DEFAULT 0 CHECK (held_rials >= 0),
    CHECK (held_rials <= ledger_rials),
    PRIMARY KEY (card_id, merchant_id)
);

CREATE TABLE store_credit_lots (
    id INTEGER PRIMARY KEY,
    card_id INTEGER NOT NULL,
    merchant_id INTEGER NOT NULL,
    remaining_rials INTEGER NOT NULL CHECK (remaining_rials >= 0),
    original_rials INTEGER NOT NULL,
    expires_at_ms INTEGER,
    source TEXT NOT NULL,
    txn_id INTEGER,
    FOREIGN KEY (card_id, merchant_id) REFERENCES store_credit_accounts(card_id, merchant_id)
);

-- Every change of a balance; merchant_id is NULL for the club account.
CREATE TABLE balance_movements (
    id INTEGER PRIMARY KEY,
    card_id INTEGER NOT NULL,
    merchant_id INTEGER,
    account TEXT NOT NULL CHECK (account IN ('club', 'store_credit')),
    delta_rials INTEGER NOT NULL,
    kind TEXT NOT NULL,
    txn_id INTEGER,
    at_ms INTEGER NOT NULL
);
CREATE INDEX balance_movements_card ON balance_movements (card_id, account);
