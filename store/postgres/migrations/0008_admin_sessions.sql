-- 0008: the admin pages' sessions and settings, as SQLite's 0008 in
-- PostgreSQL's types.

-- A signed-in operator's session. Only the SHA-256 of the session id is
-- stored; the id itself lives in the operator's cookie.
CREATE TABLE admin_sessions (
    id_hash    bytea       PRIMARY KEY,
    via        text        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX admin_sessions_expires ON admin_sessions (expires_at);

-- Settings an operator changes at run time, such as the admin password's
-- argon2id hash (herald admin password).
CREATE TABLE settings (
    name       text        PRIMARY KEY,
    value      text        NOT NULL,
    updated_at timestamptz NOT NULL
);
