-- Key check values of the switch's keys (docs/config.md, "Key check values"): recorded when a
-- key is first used on this database, compared at every start of serve, import and
-- lsw-settle, which refuse to start with a key whose value differs. A check value is the first
-- 3 bytes of a one-way function of the key (never the key). `name` is the key's variable:
-- LSW_KEK or LSW_PAN_TOKEN_KEY.
CREATE TABLE key_checks (
    name TEXT NOT NULL PRIMARY KEY,
    check_value TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL
);
