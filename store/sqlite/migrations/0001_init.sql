-- 0001: subscribers, consent, activity log, tokens, secrets and the outbox.
-- Times are INTEGER unix milliseconds UTC; NULL (or 0 in NOT NULL columns)
-- means "not yet". A shipped migration is never edited: add 0002 instead.

CREATE TABLE subscribers (
    id              INTEGER PRIMARY KEY,
    email           TEXT    NOT NULL COLLATE NOCASE UNIQUE,
    name            TEXT    NOT NULL DEFAULT '' COLLATE NOCASE,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    confirmed_at    INTEGER,
    confirm_sent_at INTEGER
);
-- The UNIQUE constraint on email (NOCASE) serves lookups and prefix search
-- by address; these serve prefix search by name and filters by status.
CREATE INDEX subscribers_name ON subscribers (name);
CREATE INDEX subscribers_status ON subscribers (status);

CREATE TABLE subscriber_newsletters (
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    newsletter_id TEXT    NOT NULL,
    PRIMARY KEY (subscriber_id, newsletter_id)
) WITHOUT ROWID;
CREATE INDEX subscriber_newsletters_newsletter ON subscriber_newsletters (newsletter_id, subscriber_id);

CREATE TABLE consents (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    ip            TEXT    NOT NULL DEFAULT '',
    user_agent    TEXT    NOT NULL DEFAULT '',
    source        TEXT    NOT NULL DEFAULT '',
    text_version  TEXT    NOT NULL DEFAULT '',
    newsletters   TEXT    NOT NULL DEFAULT '', -- newsletter ids separated by spaces
    confirmed_at  INTEGER,
    confirm_ip    TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX consents_subscriber ON consents (subscriber_id, id);

CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    at            INTEGER NOT NULL,
    kind          TEXT    NOT NULL,
    detail        TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX events_subscriber ON events (subscriber_id, id);

CREATE TABLE tokens (
    hash          BLOB    PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    purpose       TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);
CREATE INDEX tokens_subscriber ON tokens (subscriber_id);

CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- The outbox: one row per email, from birth to settlement.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL,
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    issue_id        INTEGER,
    message_id      TEXT    NOT NULL UNIQUE,
    priority        INTEGER NOT NULL DEFAULT 0,
    status          TEXT    NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'bounced', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
-- One message per (issue, subscriber): a digest is sent once, across restarts.
CREATE UNIQUE INDEX messages_issue_subscriber ON messages (issue_id, subscriber_id) WHERE issue_id IS NOT NULL;
-- The claim query walks queued rows in (priority, id) order and stops after
-- LIMIT due rows; partial indexes stay small however many rows were sent.
CREATE INDEX messages_queued ON messages (priority, id, next_attempt_at) WHERE status = 'queued';
CREATE INDEX messages_leased ON messages (lease_until) WHERE status = 'sending';
-- Progress counters (per issue and overall) and cascades from subscribers.
CREATE INDEX messages_issue_status ON messages (issue_id, status);
CREATE INDEX messages_subscriber ON messages (subscriber_id);
