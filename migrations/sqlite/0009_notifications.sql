-- Notifications (docs/notifications.md): a member's mobile number and language, and the
-- outbox of SMS messages. An outbox row is written in the same transaction as the event that
-- causes it (a confirm, a cashback lot, a credit), so an event is never durable without its
-- message nor the other way round. The dispatcher sends due rows to the SMS gateway and marks
-- them delivered; the idempotency key, derived from the event, makes a re-applied event write
-- no second row and lets the gateway drop a message it already has.
ALTER TABLE members ADD COLUMN phone TEXT;
ALTER TABLE members ADD COLUMN locale TEXT NOT NULL DEFAULT 'fa' CHECK (locale IN ('fa', 'en'));

CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    member_id INTEGER NOT NULL REFERENCES members(id),
    kind TEXT NOT NULL,
    locale TEXT NOT NULL CHECK (locale IN ('fa', 'en')),
    phone TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at_ms INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    last_error TEXT
);
-- The dispatcher's poll: undelivered rows by when they are due.
CREATE INDEX notifications_due ON notifications (next_attempt_at_ms) WHERE delivered_at_ms IS NULL;
