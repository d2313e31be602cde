-- The operator API's reads (docs/operator-api.md, "Reads"): transaction search, a transaction's
-- detail, card and member views, the terminal list. With a million cards and ten thousand
-- merchants every one of them must be an index lookup or an indexed range scan; these are the
-- indexes they walk.
--
-- A search answers newest first by (created_at_ms, id). Each filter has an index led by its
-- column and followed by created_at_ms, so a filter, a date range and a page's cursor are one
-- range of one index (SQLite appends the rowid, which is id, to every index; PostgreSQL breaks
-- ties in created_at_ms by sorting the few rows that share one).
CREATE INDEX transactions_card ON transactions (card_id, created_at_ms);
CREATE INDEX transactions_terminal ON transactions (terminal_id, created_at_ms);
CREATE INDEX transactions_merchant ON transactions (merchant_id, created_at_ms);
CREATE INDEX transactions_created ON transactions (created_at_ms);
-- Searches by outcome: confirmed transactions are most of the table, so a search for them walks
-- transactions_created and finds one at almost every step; the other states are rare, and only
-- they are indexed (a confirm takes its row out), which keeps this index small.
CREATE INDEX transactions_state ON transactions (state, created_at_ms) WHERE state <> 'confirmed';

-- A search by BIN and last four (cards expose nothing more of their PAN).
CREATE INDEX cards_bin_last4 ON cards (bin, last4);

-- The terminal list of one merchant, in terminal id order; a terminal's and a member's groups.
CREATE INDEX terminals_merchant ON terminals (merchant_id, terminal_id);
CREATE INDEX terminal_group_members_terminal ON terminal_group_members (terminal_id);
CREATE INDEX member_group_members_member ON member_group_members (member_id);

-- A card's store-credit lots, per merchant.
CREATE INDEX store_credit_lots_card ON store_credit_lots (card_id, merchant_id);
