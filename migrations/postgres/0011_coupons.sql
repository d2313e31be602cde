-- Member coupons (docs/loyalty.md). PostgreSQL dialect of migrations/sqlite/0011_coupons.sql;
-- coupons are mirrored by the engine, so they carry the change stamp of 0008.
CREATE TABLE coupons (
    id BIGINT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 64),
    member_id BIGINT NOT NULL REFERENCES members(id),
    kind TEXT NOT NULL CHECK (kind IN ('birthday', 'anniversary', 'campaign', 'win_back', 'referral', 'manual')),
    percent TEXT,
    fixed_rials BIGINT CHECK (fixed_rials > 0),
    basket_rials_min BIGINT NOT NULL CHECK (basket_rials_min >= 0),
    discount_rials_max BIGINT CHECK (discount_rials_max >= 0),
    merchant_id BIGINT REFERENCES merchants(id),
    issued_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL CHECK (expires_at_ms > issued_at_ms),
    state TEXT NOT NULL CHECK (state IN ('available', 'held', 'used', 'withdrawn')),
    txn_id BIGINT,
    operator TEXT NOT NULL,
    change_seq BIGINT NOT NULL DEFAULT 0,
    CHECK ((percent IS NULL) <> (fixed_rials IS NULL)),
    CHECK ((state IN ('available', 'withdrawn')) = (txn_id IS NULL))
);
CREATE INDEX coupons_member ON coupons (member_id);
CREATE TRIGGER coupons_stamp BEFORE INSERT OR UPDATE ON coupons
    FOR EACH ROW EXECUTE FUNCTION stamp_change_seq();
CREATE INDEX coupons_change_seq ON coupons (change_seq);

ALTER TABLE transactions ADD COLUMN coupon_id BIGINT;
ALTER TABLE transactions ADD COLUMN coupon_rials BIGINT NOT NULL DEFAULT 0 CHECK (coupon_rials >= 0);

-- A confirm on the advice path (its hold had timed out and given the coupon back) whose coupon
-- another purchase has used meanwhile: the member got the coupon's discount twice. Recorded for
-- the finance team like the other exceptions.
CREATE TABLE coupon_exceptions (
    txn_id BIGINT NOT NULL PRIMARY KEY REFERENCES transactions(id),
    coupon_id BIGINT NOT NULL REFERENCES coupons(id),
    amount_rials BIGINT NOT NULL CHECK (amount_rials > 0),
    at_ms BIGINT NOT NULL
);
