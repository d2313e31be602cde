-- Occasions and referrals (docs/loyalty.md). PostgreSQL dialect of
-- migrations/sqlite/0012_occasions_referrals.sql; referral_rewards is mirrored by the engine,
-- so it carries the change stamp of 0008.
ALTER TABLE members ADD COLUMN birth_date TEXT CHECK (length(birth_date) = 10);
ALTER TABLE members ADD COLUMN joined_on TEXT CHECK (length(joined_on) = 10);
ALTER TABLE members ADD COLUMN referred_by TEXT;

CREATE TABLE referral_rewards (
    referred_member_id BIGINT NOT NULL PRIMARY KEY REFERENCES members(id),
    referrer_member_id BIGINT NOT NULL REFERENCES members(id),
    txn_id BIGINT NOT NULL,
    referred_coupon_id BIGINT NOT NULL REFERENCES coupons(id),
    referrer_coupon_id BIGINT NOT NULL REFERENCES coupons(id),
    at_ms BIGINT NOT NULL,
    reversed_at_ms BIGINT,
    change_seq BIGINT NOT NULL DEFAULT 0
);
CREATE TRIGGER referral_rewards_stamp BEFORE INSERT OR UPDATE ON referral_rewards
    FOR EACH ROW EXECUTE FUNCTION stamp_change_seq();
CREATE INDEX referral_rewards_change_seq ON referral_rewards (change_seq);
