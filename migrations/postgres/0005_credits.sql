-- Credits made by operators outside purchases (docs/operator-api.md): club top-ups and
-- store-credit grants. The idempotency key is the primary key, so a retried credit can never
-- count twice; its balance movement (kind 'top_up' or 'grant') and, for a grant, its lot are
-- written in the same transaction.
--
-- PostgreSQL dialect of migrations/sqlite/0005_credits.sql.
CREATE TABLE balance_credits (
    idempotency_key TEXT NOT NULL PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 1 AND 64),
    card_id BIGINT NOT NULL REFERENCES cards(id),
    merchant_id BIGINT REFERENCES merchants(id),
    amount_rials BIGINT NOT NULL CHECK (amount_rials > 0),
    lot_id BIGINT,
    operator TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    CHECK ((merchant_id IS NULL) = (lot_id IS NULL))
);
