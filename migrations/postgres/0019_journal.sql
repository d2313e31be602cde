-- The journal's projection (docs/design.md, "The journal"). In journal mode the journal is the
-- commit point and these tables are a projection of it, written behind the answers. One row:
-- applied_seq is the last journal record projected, written in the same transaction as the
-- record's rows, so projection is exactly-once across crashes; projected_before_ms is a time
-- before which every decision of the switch is in the database; running is 1 while a
-- journal-mode switch serves (0 after a clean stop, which projects everything). Settlement
-- asks for a fence (fence_asked_ms: reversals of transactions confirmed before it are refused
-- from then on) and closes a cycle only once the switch holds it (fence_held_ms) and the
-- projection has passed the cutoff.
CREATE TABLE journal_progress (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    applied_seq BIGINT NOT NULL CHECK (applied_seq >= 0),
    projected_before_ms BIGINT NOT NULL,
    running BIGINT NOT NULL CHECK (running IN (0, 1)),
    fence_asked_ms BIGINT NOT NULL,
    fence_held_ms BIGINT NOT NULL
);
INSERT INTO journal_progress VALUES (1, 0, 0, 0, 0, 0);
