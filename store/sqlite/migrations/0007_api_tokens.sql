-- 0007: admin API tokens, and an index for the admin API's daily statistics.
-- Times are INTEGER unix milliseconds UTC; NULL means "not yet".
-- A shipped migration is never edited: add 0008 instead.

-- Only the SHA-256 of a token is stored; the token is shown once when made.
-- A revoked token keeps its row (and its name stays taken), so that the
-- list shows what was revoked and when.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    hash         BLOB    NOT NULL UNIQUE,
    scope        TEXT    NOT NULL CHECK (scope IN ('read', 'write')),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

-- GET /api/v1/stats counts events per day over the last weeks: a range of
-- this index instead of a scan of the whole activity log.
CREATE INDEX events_at ON events (at);
