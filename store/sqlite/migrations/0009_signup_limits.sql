-- 0009: the signup defences' counts, as PostgreSQL's 0009.
--
-- On SQLite (one instance) these counts live in the process and the tables
-- stay empty; they are here so that both engines have one schema, which
-- herald db copy checks table by table.

CREATE TABLE signup_counters (
    win      INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    key_hash BLOB    NOT NULL,
    hits     INTEGER NOT NULL,
    PRIMARY KEY (win, kind, key_hash)
);

CREATE TABLE signup_spent (
    id_hash    BLOB    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX signup_spent_expires ON signup_spent (expires_at);

CREATE TABLE signup_attack (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    ends_at INTEGER NOT NULL
);
