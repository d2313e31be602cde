-- Several switch processes on one database (docs/config.md, "Several processes"): the batch
-- sequence and a change stamp on every row the engine mirrors in memory.
--
-- batch_sequence holds one row. A process sharing the database takes the row's lock as the
-- first statement of each group commit (UPDATE … SET seq = seq + 1), so batches of all
-- processes are written one after the other, and each batch has a number. Every row a batch
-- inserts or changes carries that number in change_seq; a process reads the rows stamped by
-- other processes' batches since its own last one before it decides anything.
--
-- On SQLite only one process runs, so the columns stay 0 and nothing reads them; they exist
-- so that both dialects have the same tables and columns.
CREATE TABLE batch_sequence (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL CHECK (seq >= 0)
);
INSERT INTO batch_sequence (id, seq) VALUES (1, 0);

ALTER TABLE club_balances ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE store_credit_accounts ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE store_credit_lots ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transactions ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE answered_messages ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tombstones ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE balance_credits ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE card_replacements ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
