-- Member coupons (docs/loyalty.md): one-time discounts issued to a member, applied to their
-- next eligible purchase on top of the best rule's discount, held by that purchase while it
-- is pending, used by its confirm, available again after a reversal or a timeout. The
-- idempotency key makes a retried issue count once; each state change names the state it
-- leaves, so a re-applied change fails instead of counting twice.
CREATE TABLE coupons (
    id INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 64),
    member_id INTEGER NOT NULL REFERENCES members(id),
    kind TEXT NOT NULL CHECK (kind IN ('birthday', 'anniversary', 'campaign', 'win_back', 'referral', 'manual')),
    percent TEXT,
    fixed_rials INTEGER CHECK (fixed_rials > 0),
    basket_rials_min INTEGER NOT NULL CHECK (basket_rials_min >= 0),
    discount_rials_max INTEGER CHECK (discount_rials_max >= 0),
    merchant_id INTEGER REFERENCES merchants(id),
    issued_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL CHECK (expires_at_ms > issued_at_ms),
    state TEXT NOT NULL CHECK (state IN ('available', 'held', 'used', 'withdrawn')),
    txn_id INTEGER,
    operator TEXT NOT NULL,
    change_seq INTEGER NOT NULL DEFAULT 0,
    CHECK ((percent IS NULL) <> (fixed_rials IS NULL)),
    CHECK ((state IN ('available', 'withdrawn')) = (txn_id IS NULL))
);
CREATE INDEX coupons_member ON coupons (member_id);

-- The coupon a purchase holds or used, and the part of its discount the coupon gave (the
-- rest of discount_rials is its rule's).
ALTER TABLE transactions ADD COLUMN coupon_id INTEGER;
ALTER TABLE transactions ADD COLUMN coupon_rials INTEGER NOT NULL DEFAULT 0 CHECK (coupon_rials >= 0);

-- A confirm on the advice path (its hold had timed out and given the coupon back) whose coupon
-- another purchase has used meanwhile: the member got the coupon's discount twice. Recorded for
-- the finance team like the other exceptions.
CREATE TABLE coupon_exceptions (
    txn_id INTEGER NOT NULL PRIMARY KEY REFERENCES transactions(id),
    coupon_id INTEGER NOT NULL REFERENCES coupons(id),
    amount_rials INTEGER NOT NULL CHECK (amount_rials > 0),
    at_ms INTEGER NOT NULL
);
