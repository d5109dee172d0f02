-- 0005: the suppression list, delivery statistics, and what retention needs.
-- The same tables and index as SQLite's 0005, in PostgreSQL's types (see
-- that file for what they mean). A database made before this port has 0006
-- and 0007 already; it gets 0005 after them, which is fine: 0005 depends on
-- neither. delivery_stats.day stays text (YYYY-MM-DD, UTC), as on SQLite,
-- so that herald db copy moves it unchanged.
-- A shipped migration is never edited: add a new one instead.

CREATE TABLE suppressions (
    hash       bytea       PRIMARY KEY, -- HMAC-SHA256 of the normalised address
    reason     text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL
);

CREATE TABLE delivery_stats (
    day    text   COLLATE "C" NOT NULL,
    kind   text   COLLATE "C" NOT NULL,
    status text   COLLATE "C" NOT NULL,
    count  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, kind, status)
);

-- Retention finds unconfirmed signups by age; only pending rows are in it.
CREATE INDEX subscribers_pending ON subscribers (updated_at) WHERE status = 'pending';
