-- 0005: the suppression list, delivery statistics, and what retention needs.
-- Times are INTEGER unix milliseconds UTC.
-- A shipped migration is never edited: add 0006 instead.

-- Addresses Herald must never write to again, kept only as the HMAC-SHA256
-- of the normalised address under the secret "suppression_key": an erased
-- reader leaves no address behind, yet cannot be re-added by an import or
-- a signup.
CREATE TABLE suppressions (
    hash       BLOB    PRIMARY KEY,
    reason     TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Settled messages older than privacy.delivery_log_days, and those of
-- erased readers, are counted here and deleted: how many emails of each
-- kind were sent, failed, bounced or cancelled on each (UTC) day, without
-- saying to whom.
CREATE TABLE delivery_stats (
    day    TEXT    NOT NULL, -- YYYY-MM-DD, UTC, of the message's last change
    kind   TEXT    NOT NULL,
    status TEXT    NOT NULL,
    count  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, kind, status)
) WITHOUT ROWID;

-- Retention finds unconfirmed signups by age without reading every
-- subscriber; the index holds pending rows only, so active readers never
-- pay for it.
CREATE INDEX subscribers_pending ON subscribers (updated_at) WHERE status = 'pending';
-- No index on messages for retention: it walks the outbox by id on a
-- read connection once an hour, and every outbox write would pay for one.
