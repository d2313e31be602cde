-- The operator API (docs/operator-api.md): bearer tokens and the audit log.

-- A token is stored only as the SHA-256 of its text, so a copy of the database does not let
-- anyone call the API. role 'read' may only read; 'write' may also change reference data.
CREATE TABLE operator_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    token_sha256 BLOB NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    role TEXT NOT NULL CHECK (role IN ('read', 'write')),
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);

-- Every change made through the API, written in the same transaction as the change: who (the
-- token's name), when, what (action and resource) and the request's fields, never a PAN, a
-- TMK or a token.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    operator TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    resource_code TEXT NOT NULL,
    detail TEXT NOT NULL
);

CREATE INDEX audit_log_by_resource ON audit_log (resource, resource_code);
