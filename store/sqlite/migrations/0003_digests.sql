-- 0003: newsletters as first seen, digest issues and their editions.
-- Times are INTEGER unix milliseconds UTC; NULL means "not yet".
-- A shipped migration is never edited: add 0004 instead.

-- When each configured newsletter id was first seen: slots before it are
-- never sent (a newsletter added today does not send yesterday's issue).
CREATE TABLE newsletters (
    id            TEXT    PRIMARY KEY,
    first_seen_at INTEGER NOT NULL
) WITHOUT ROWID;

-- One issue per (newsletter, slot): the unique row that makes a scheduled
-- issue happen once, across passes, restarts and instances. No foreign key
-- to newsletters: a newsletter removed from the configuration keeps its
-- archive.
CREATE TABLE issues (
    id              INTEGER PRIMARY KEY,
    newsletter_id   TEXT    NOT NULL,
    slot_at         INTEGER NOT NULL,
    manual          INTEGER NOT NULL DEFAULT 0 CHECK (manual IN (0, 1)),
    status          TEXT    NOT NULL DEFAULT 'building'
                    CHECK (status IN ('building', 'sending', 'sent', 'empty')),
    subject         TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    completed_at    INTEGER,
    readers         INTEGER NOT NULL DEFAULT 0,
    main_edition_id INTEGER REFERENCES editions (id),
    UNIQUE (newsletter_id, slot_at)
);
-- The scheduler looks for issues still building or sending; few ever are.
CREATE INDEX issues_open ON issues (status) WHERE status IN ('building', 'sending');

-- One edition per distinct article list within an issue; readers who get
-- the same articles share it, and it is rendered once.
CREATE TABLE editions (
    id          INTEGER PRIMARY KEY,
    issue_id    INTEGER NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    article_ids TEXT    NOT NULL, -- article ids in email order, comma-separated
    readers     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (issue_id, article_ids)
);

ALTER TABLE messages ADD COLUMN edition_id INTEGER REFERENCES editions (id);

-- A reader's Since: their latest issue of a newsletter, found by walking
-- their digest messages from the newest issue down (a few steps, however
-- many issues they received). The status stays out of the index, so that
-- settling a message never rewrites it. Its leading column serves what
-- messages_subscriber (0001) did (cascades from subscribers, a subscriber's
-- deliveries), so that one goes: every outbox row keeps the same number of
-- indexes to write.
CREATE INDEX messages_subscriber_issue ON messages (subscriber_id, issue_id);
DROP INDEX messages_subscriber;
-- No index on messages (edition_id): editions are never deleted, and every
-- digest row would pay for it.
