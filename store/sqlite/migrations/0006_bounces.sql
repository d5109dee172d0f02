-- 0006: bounces and complaints.
-- Times are INTEGER unix milliseconds UTC; NULL means "not yet".
-- A shipped migration is never edited: add a new one instead.

-- Soft bounces are counted per subscriber: the count starts again when the
-- previous soft bounce is older than the window (bounces.soft_window), and
-- reaching bounces.soft_threshold makes the address bounced.
ALTER TABLE subscribers ADD COLUMN soft_bounces INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscribers ADD COLUMN last_soft_bounce_at INTEGER;

-- Every bounce or complaint report received (webhooks, herald bounces
-- import), whether it matched a subscriber or not. It never holds an
-- address: reasons are redacted, and an unmatched report keeps no trace of
-- whom it was about. Erasing a subscriber keeps their rows, anonymous.
CREATE TABLE bounce_log (
    id            INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL, -- when the report says it happened
    received_at   INTEGER NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint', 'unparsed')),
    result        TEXT    NOT NULL CHECK (result IN ('applied', 'unmatched', 'unparsed')),
    subscriber_id INTEGER REFERENCES subscribers (id) ON DELETE SET NULL,
    reason        TEXT    NOT NULL DEFAULT '',
    source        TEXT    NOT NULL DEFAULT '',
    -- The report's id at its source (SNS message, SendGrid event, ...):
    -- a report delivered twice is applied once. NULL when it has none.
    report_id     TEXT    UNIQUE
);
-- A subscriber's reports, and the SET NULL when one is erased.
CREATE INDEX bounce_log_subscriber ON bounce_log (subscriber_id) WHERE subscriber_id IS NOT NULL;
