-- Transactions, their captures, the idempotency window, reversal tombstones and exceptions
-- (DESIGN.md sections 3, 5 and 6). Money columns are integer rials.

CREATE TABLE transactions (
    id INTEGER PRIMARY KEY,
    ksi TEXT NOT NULL,
    mti TEXT NOT NULL,
    stan INTEGER NOT NULL,
    transmitted TEXT NOT NULL,
    terminal_id INTEGER NOT NULL,
    merchant_id INTEGER NOT NULL,
    card_id INTEGER NOT NULL,
    processing_code TEXT NOT NULL,
    gross_rials INTEGER NOT NULL CHECK (gross_rials > 0),
    discount_rials INTEGER NOT NULL CHECK (discount_rials >= 0),
    fee_rials INTEGER NOT NULL CHECK (fee_rials >= 0),
    store_credit_rials INTEGER NOT NULL CHECK (store_credit_rials >= 0),
    club_rials INTEGER NOT NULL CHECK (club_rials >= 0),
    bank_rest_rials INTEGER NOT NULL CHECK (bank_rest_rials >= 0),
    cashback_rials INTEGER NOT NULL CHECK (cashback_rials >= 0),
    rule_id INTEGER,
    snapshot_version INTEGER NOT NULL,
    rrn TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'reversed', 'expired')),
    created_at_ms INTEGER NOT NULL,
    hold_expires_at_ms INTEGER NOT NULL,
    confirmed_at_ms INTEGER,
    reversed_at_ms INTEGER,
    expired_at_ms INTEGER,
    cashback_lot_id INTEGER,
    cycle_id INTEGER,
    CHECK (gross_rials = discount_rials + store_credit_rials + club_rials + bank_rest_rials),
    UNIQUE (ksi, mti, stan, transmitted)
);
-- The state machine of DESIGN.md section 5, guarded in the database too: a batch that tries
-- any other transition (a second capture, a reversal of a settled transaction) fails whole.
CREATE TRIGGER transactions_state_transition BEFORE UPDATE OF state ON transactions
WHEN NOT (
    (OLD.state = 'pending' AND NEW.state IN ('confirmed', 'reversed', 'expired'))
    OR (OLD.state = 'expired' AND NEW.state IN ('confirmed', 'reversed'))
    OR (OLD.state = 'confirmed' AND NEW.state = 'reversed' AND OLD.cycle_id IS NULL)
)
BEGIN
    SELECT RAISE(ABORT, 'transaction state transition not allowed');
END;

CREATE INDEX transactions_pending ON transactions (state) WHERE state = 'pending';
CREATE INDEX transactions_unsettled ON transactions (confirmed_at_ms) WHERE cycle_id IS NULL;

-- Exactly one capture per confirmed transaction (the primary key says so).
CREATE TABLE captures (
    txn_id INTEGER PRIMARY KEY REFERENCES transactions(id),
    at_ms INTEGER NOT NULL,
    club_rials INTEGER NOT NULL CHECK (club_rials >= 0),
    store_credit_rials INTEGER NOT NULL CHECK (store_credit_rials >= 0),
    returned_at_ms INTEGER
);

-- Which store-credit lots a capture drew from, so a reversal returns to the same lots.
CREATE TABLE capture_lots (
    txn_id INTEGER NOT NULL REFERENCES transactions(id),
    lot_id INTEGER NOT NULL REFERENCES store_credit_lots(id),
    taken_rials INTEGER NOT NULL CHECK (taken_rials > 0),
    PRIMARY KEY (txn_id, lot_id)
);

-- Answered approvals, confirms and reversals, for idempotent retransmission
-- (PROTOCOL.md section 7: kept at least 24 hours). No PAN: the fingerprint is a hash over
-- the fields and the keyed PAN token.
CREATE TABLE answered_messages (
    ksi TEXT NOT NULL,
    mti TEXT NOT NULL,
    stan INTEGER NOT NULL,
    transmitted TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    response BLOB NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (ksi, mti, stan, transmitted)
);

-- Reversals whose original was never seen: the original is declined if it arrives later.
CREATE TABLE tombstones (
    ksi TEXT NOT NULL,
    mti TEXT NOT NULL,
    stan INTEGER NOT NULL,
    transmitted TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (ksi, mti, stan, transmitted)
);

-- Money the switch could not move and a person must look at: confirm advices whose balance
-- no longer covered the capture, cashback claw-backs of credit already spent, and reversals
-- of transactions already settled (answered 12: paid-out money goes back only through the
-- finance team's adjustments, PROTOCOL.md section 7). amount_rials is the shortfall, or for a
-- late reversal the club amount the merchant was paid.
CREATE TABLE exceptions (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL
        CHECK (kind IN ('advice_shortfall', 'cashback_clawback_shortfall', 'late_reversal')),
    txn_id INTEGER NOT NULL REFERENCES transactions(id),
    account TEXT NOT NULL CHECK (account IN ('club', 'store_credit')),
    amount_rials INTEGER NOT NULL CHECK (amount_rials >= 0),
    at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX exceptions_late_reversal ON exceptions (txn_id) WHERE kind = 'late_reversal';
