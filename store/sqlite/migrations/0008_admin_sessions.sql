-- 0008: the admin pages' sessions and settings.

-- A signed-in operator's session. Only the SHA-256 of the session id is
-- stored; the id itself lives in the operator's cookie.
CREATE TABLE admin_sessions (
    id_hash    BLOB    PRIMARY KEY,
    via        TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX admin_sessions_expires ON admin_sessions (expires_at);

-- Settings an operator changes at run time, such as the admin password's
-- argon2id hash (herald admin password).
CREATE TABLE settings (
    name       TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
