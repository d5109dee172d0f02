-- 0002: articles, their tags, and the state of polled feeds.
-- Times are INTEGER unix milliseconds UTC; NULL means "not yet".
-- A shipped migration is never edited: add 0003 instead.

CREATE TABLE articles (
    id           INTEGER PRIMARY KEY,
    url          TEXT    NOT NULL UNIQUE,
    guid         TEXT    NOT NULL DEFAULT '',
    source       TEXT    NOT NULL DEFAULT '',
    title        TEXT    NOT NULL,
    author       TEXT    NOT NULL DEFAULT '',
    summary      TEXT    NOT NULL DEFAULT '',
    content_html TEXT    NOT NULL DEFAULT '',
    content_text TEXT    NOT NULL DEFAULT '',
    excerpt      TEXT    NOT NULL DEFAULT '',
    image_url    TEXT    NOT NULL DEFAULT '',
    image_alt    TEXT    NOT NULL DEFAULT '',
    hash         TEXT    NOT NULL,
    published_at INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
-- A feed item whose URL changed is found again by (source, guid).
CREATE INDEX articles_guid ON articles (guid, source) WHERE guid <> '';
-- Digests select by publication time; the admin side by source.
CREATE INDEX articles_published ON articles (published_at, id);
CREATE INDEX articles_source ON articles (source, id);

CREATE TABLE article_tags (
    article_id INTEGER NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    tag        TEXT    NOT NULL,
    PRIMARY KEY (article_id, tag)
) WITHOUT ROWID;
CREATE INDEX article_tags_tag ON article_tags (tag, article_id);

CREATE TABLE feeds (
    url                  TEXT    PRIMARY KEY,
    etag                 TEXT    NOT NULL DEFAULT '',
    last_modified        TEXT    NOT NULL DEFAULT '',
    last_fetched_at      INTEGER,
    last_success_at      INTEGER,
    last_error           TEXT    NOT NULL DEFAULT '',
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    articles_seen        INTEGER NOT NULL DEFAULT 0
);
