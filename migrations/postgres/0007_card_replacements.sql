-- Card replacement (docs/operator-api.md): a card's balances moved to the new card that
-- replaces it. A card is replaced at most once (the primary key) and a card replaces at most
-- one (UNIQUE); the movements themselves are in balance_movements (replace_out, replace_in).
--
-- PostgreSQL dialect of migrations/sqlite/0007_card_replacements.sql.
CREATE TABLE card_replacements (
    from_card_id BIGINT NOT NULL PRIMARY KEY REFERENCES cards(id),
    to_card_id BIGINT NOT NULL UNIQUE REFERENCES cards(id),
    club_rials BIGINT NOT NULL CHECK (club_rials >= 0),
    store_credit_rials BIGINT NOT NULL CHECK (store_credit_rials >= 0),
    operator TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    CHECK (from_card_id <> to_card_id)
);
