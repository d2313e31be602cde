-- Online club-card top-ups (docs/top-up.md). An order is created for a card (by the operator
-- API, for the member); the payment gateway confirms it through a signed callback, and the
-- accepted callback's club credit, its balance_credits row (key 'top-up:<reference>'), the
-- order's move to 'paid' and the callback's row are written in one group-commit transaction.
-- Every other callback (forged, malformed, unknown order, duplicate, late, mismatched, not
-- paid) changes nothing but its own row in top_up_callbacks, for the report.
CREATE TABLE top_up_orders (
    id INTEGER PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE CHECK (length(reference) BETWEEN 1 AND 64),
    idempotency_key TEXT NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 64),
    card_id INTEGER NOT NULL REFERENCES cards(id),
    amount_rials INTEGER NOT NULL CHECK (amount_rials > 0),
    currency TEXT NOT NULL CHECK (length(currency) = 3),
    state TEXT NOT NULL CHECK (state IN ('created', 'paid')),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL CHECK (expires_at_ms > created_at_ms),
    payment_reference TEXT UNIQUE,
    paid_at_ms INTEGER,
    operator TEXT NOT NULL,
    CHECK ((state = 'paid') = (payment_reference IS NOT NULL)),
    CHECK ((state = 'paid') = (paid_at_ms IS NOT NULL))
);
CREATE INDEX top_up_orders_card ON top_up_orders (card_id);

-- Every callback received, whatever became of it. Fields are NULL where the callback did not
-- carry them (or, for a forged one, are not trusted enough to keep: only its body's hash is).
CREATE TABLE top_up_callbacks (
    id INTEGER PRIMARY KEY,
    received_at_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'already_paid',
        'unknown_order', 'late', 'amount_mismatch', 'currency_mismatch', 'not_paid',
        'refused', 'bad_signature', 'malformed')),
    payment_reference TEXT,
    order_id INTEGER REFERENCES top_up_orders(id),
    amount_rials INTEGER,
    currency TEXT,
    body_sha256 TEXT NOT NULL CHECK (length(body_sha256) = 64)
);
-- A payment reference is accepted at most once.
CREATE UNIQUE INDEX top_up_callbacks_accepted ON top_up_callbacks (payment_reference)
    WHERE outcome = 'accepted';
CREATE INDEX top_up_callbacks_received ON top_up_callbacks (received_at_ms);
