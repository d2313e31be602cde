-- Several switch processes on one database (docs/config.md, "Several processes"): the batch
-- sequence and a change stamp on every row the engine mirrors in memory.
--
-- batch_sequence holds one row. A process takes the row's lock as the first statement of each
-- group commit (UPDATE … SET seq = seq + 1 RETURNING seq) and holds it to the commit, so the
-- batches of all processes are written one after the other and each has a number. The batch
-- sets `lsw.batch_seq` for its transaction (SET LOCAL), and the trigger below stamps it on
-- every row inserted or changed. Before deciding, a process reads the rows stamped by other
-- processes' batches since its own last one. Rows inserted outside a batch (import) stamp 0,
-- and updates outside a batch (settlement) keep the row's stamp; the switch learns of those
-- by other means (settled cycles, reference reloads).
--
-- PostgreSQL dialect of migrations/sqlite/0008_shared_batches.sql.
CREATE TABLE batch_sequence (
    id BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL CHECK (seq >= 0)
);
INSERT INTO batch_sequence (id, seq) VALUES (1, 0);

CREATE FUNCTION stamp_change_seq() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    batch TEXT := NULLIF(current_setting('lsw.batch_seq', true), '');
BEGIN
    IF batch IS NOT NULL THEN
        NEW.change_seq := batch::BIGINT;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Not a batch (settlement marking a cycle): the stamp of the last batch stays, so a
        -- process that has not read that batch yet still finds the row.
        NEW.change_seq := OLD.change_seq;
    ELSE
        NEW.change_seq := 0;
    END IF;
    RETURN NEW;
END;
$$;

ALTER TABLE club_balances ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE store_credit_accounts ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE store_credit_lots ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE transactions ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE answered_messages ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tombstones ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE balance_credits ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE card_replacements ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;

CREATE TRIGGER club_balances_stamp BEFORE INSERT OR UPDATE ON club_balances
    FOR EACH ROW EXECUTE FUNCTION stamp_change_seq();
CREATE TRIGGER store_credit_accounts_stamp BEFORE INSERT OR UPDATE ON store_credit_accounts
    FOR EACH ROW EXECUTE FUNCTION stamp_change_seq();
CREATE TRIGGER store_credit_lots_stamp BEFORE INSERT OR UPDATE ON store_credit_lots
    FOR EACH ROW EXECUTE FUNCTION stamp_change_seq();
CREATE TRIGGER transactions_stamp BEFORE INSERT OR UPDATE ON transactions
    FOR EACH ROW EXECUTE FUNCTION stamp_change_seq();
CREATE TRIGGER answered_messages_stamp BEFORE INSERT OR UPDATE ON answered_messages
    FOR EACH ROW EXECUTE FUNCTION stamp_change_seq();
CREATE TRIGGER tombstones_stamp BEFORE INSERT OR UPDATE ON tombstones
    FOR EACH ROW EXECUTE FUNCTION stamp_change_seq();
CREATE TRIGGER balance_credits_stamp BEFORE INSERT OR UPDATE ON balance_credits
    FOR EACH ROW EXECUTE FUNCTION stamp_change_seq();
CREATE TRIGGER card_replacements_stamp BEFORE INSERT OR UPDATE ON card_replacements
    FOR EACH ROW EXECUTE FUNCTION stamp_change_seq();

CREATE INDEX club_balances_change_seq ON club_balances (change_seq);
CREATE INDEX store_credit_accounts_change_seq ON store_credit_accounts (change_seq);
CREATE INDEX store_credit_lots_change_seq ON store_credit_lots (change_seq);
CREATE INDEX transactions_change_seq ON transactions (change_seq);
CREATE INDEX answered_messages_change_seq ON answered_messages (change_seq);
CREATE INDEX tombstones_change_seq ON tombstones (change_seq);
CREATE INDEX balance_credits_change_seq ON balance_credits (change_seq);
CREATE INDEX card_replacements_change_seq ON card_replacements (change_seq);
