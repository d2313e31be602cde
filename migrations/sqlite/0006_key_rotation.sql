-- Key rotation (docs/operator-api.md): a terminal's previous key, which keeps working until
-- valid_until_ms so terminals can be moved to their new key without a cut-over. At most one per
-- terminal; a new rotation replaces it, a revocation deletes it. The TMK is sealed as in
-- terminals.tmk_sealed, under the same terminal id.
CREATE TABLE terminal_previous_keys (
    terminal_id INTEGER NOT NULL PRIMARY KEY REFERENCES terminals(id),
    ksi TEXT NOT NULL UNIQUE CHECK (length(ksi) = 16),
    tmk_sealed BLOB NOT NULL CHECK (length(tmk_sealed) = 61),
    valid_until_ms INTEGER NOT NULL
);
