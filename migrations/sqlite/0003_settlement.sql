-- Settlement (DESIGN.md section 7, docs/settlement.md): cycles, their per-merchant lines,
-- adjustments and carried-forward receivables. Money columns are integer rials.

-- One cycle per working day, closed at that day's cutoff. UNIQUE (business_date) is what makes
-- two racing closes of one date produce one cycle. The totals are the sums of the lines.
CREATE TABLE settlement_cycles (
    id INTEGER PRIMARY KEY,
    business_date TEXT NOT NULL UNIQUE CHECK (length(business_date) = 10),
    cutoff_at_ms INTEGER NOT NULL,
    closed_at_ms INTEGER NOT NULL CHECK (closed_at_ms >= cutoff_at_ms),
    due_date TEXT NOT NULL CHECK (due_date > business_date),
    txn_count INTEGER NOT NULL CHECK (txn_count >= 0),
    gross_rials INTEGER NOT NULL,
    discount_rials INTEGER NOT NULL,
    fee_rials INTEGER NOT NULL,
    store_credit_rials INTEGER NOT NULL,
    club_rials INTEGER NOT NULL,
    bank_rest_rials INTEGER NOT NULL,
    cashback_rials INTEGER NOT NULL,
    adjustments_rials INTEGER NOT NULL,
    carried_in_rials INTEGER NOT NULL CHECK (carried_in_rials <= 0),
    payout_rials INTEGER NOT NULL CHECK (payout_rials >= 0),
    carried_out_rials INTEGER NOT NULL CHECK (carried_out_rials <= 0)
);

-- One line per merchant that had transactions, adjustments or a receivable in the cycle. The
-- merchant's code, name and IBAN are copied at close, so re-written files never change when
-- the reference data does. carried_in is the receivable brought in (<= 0), carried_out the one
-- taken to the merchant's next cycle (<= 0); payout + carried_out = club - fee + adjustments +
-- carried_in.
CREATE TABLE settlement_lines (
    cycle_id INTEGER NOT NULL REFERENCES settlement_cycles(id),
    merchant_id INTEGER NOT NULL REFERENCES merchants(id),
    merchant_code TEXT NOT NULL,
    merchant_name TEXT NOT NULL,
    iban TEXT NOT NULL,
    txn_count INTEGER NOT NULL CHECK (txn_count >= 0),
    gross_rials INTEGER NOT NULL,
    discount_rials INTEGER NOT NULL,
    fee_rials INTEGER NOT NULL,
    store_credit_rials INTEGER NOT NULL,
    club_rials INTEGER NOT NULL,
    bank_rest_rials INTEGER NOT NULL,
    cashback_rials INTEGER NOT NULL,
    adjustments_rials INTEGER NOT NULL,
    carried_in_rials INTEGER NOT NULL CHECK (carried_in_rials <= 0),
    payout_rials INTEGER NOT NULL CHECK (payout_rials >= 0),
    carried_out_rials INTEGER NOT NULL CHECK (carried_out_rials <= 0),
    CHECK (payout_rials = 0 OR carried_out_rials = 0),
    PRIMARY KEY (cycle_id, merchant_id)
);
-- A merchant's latest line holds its open receivable.
CREATE INDEX settlement_lines_merchant ON settlement_lines (merchant_id, cycle_id);

-- Money moved outside transactions: late reversals (one per reversed settled transaction) and
-- the finance team's manual entries. cycle_id is NULL until a close takes it.
CREATE TABLE settlement_adjustments (
    id INTEGER PRIMARY KEY,
    merchant_id INTEGER NOT NULL REFERENCES merchants(id),
    amount_rials INTEGER NOT NULL,
    reason TEXT NOT NULL CHECK (length(reason) > 0),
    source TEXT NOT NULL CHECK (source IN ('late_reversal', 'manual')),
    txn_id INTEGER REFERENCES transactions(id),
    created_at_ms INTEGER NOT NULL,
    cycle_id INTEGER REFERENCES settlement_cycles(id),
    CHECK ((source = 'late_reversal') = (txn_id IS NOT NULL))
);
CREATE UNIQUE INDEX settlement_adjustments_late_reversal
    ON settlement_adjustments (txn_id) WHERE source = 'late_reversal';
CREATE INDEX settlement_adjustments_open
    ON settlement_adjustments (created_at_ms) WHERE cycle_id IS NULL;
CREATE INDEX settlement_adjustments_cycle ON settlement_adjustments (cycle_id);

-- A cycle's transactions, for its reconciliation and files. Partial, so the switch's inserts
-- (cycle_id NULL) never touch it.
CREATE INDEX transactions_cycle ON transactions (cycle_id) WHERE cycle_id IS NOT NULL;
-- A cycle's ledger movements, found through its transactions.
CREATE INDEX balance_movements_txn ON balance_movements (txn_id);
