-- Occasions and referrals (docs/loyalty.md): a member's birthday and joining date, for the
-- birthday and anniversary coupons of the scheduled job, and the member who referred them (a
-- member's code is their referral code). referral_rewards holds one row per referred member
-- rewarded: the referred member's first confirmed purchase gives both sides the configured
-- coupon, once; a reversal of that purchase withdraws the coupons not used yet.
ALTER TABLE members ADD COLUMN birth_date TEXT CHECK (length(birth_date) = 10);
ALTER TABLE members ADD COLUMN joined_on TEXT CHECK (length(joined_on) = 10);
ALTER TABLE members ADD COLUMN referred_by TEXT;

CREATE TABLE referral_rewards (
    referred_member_id INTEGER NOT NULL PRIMARY KEY REFERENCES members(id),
    referrer_member_id INTEGER NOT NULL REFERENCES members(id),
    txn_id INTEGER NOT NULL,
    referred_coupon_id INTEGER NOT NULL REFERENCES coupons(id),
    referrer_coupon_id INTEGER NOT NULL REFERENCES coupons(id),
    at_ms INTEGER NOT NULL,
    reversed_at_ms INTEGER,
    change_seq INTEGER NOT NULL DEFAULT 0
);
