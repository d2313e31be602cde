-- Bulk card operations (docs/operator-api.md, "Bulk card operations"): an operator blocks,
-- unblocks or renews a list of cards from a file. Each run is kept by its idempotency key with
-- its report, so the same key and file again answers the same report and changes nothing, and
-- the same key with another file is refused.
CREATE TABLE card_operations (
    idempotency_key TEXT NOT NULL PRIMARY KEY,
    action TEXT NOT NULL CHECK (action IN ('block', 'unblock', 'renew')),
    body_sha256 TEXT NOT NULL CHECK (length(body_sha256) = 64),
    operator TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    report TEXT NOT NULL
);
