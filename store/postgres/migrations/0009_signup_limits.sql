-- 0009: the signup defences' counts, shared by every instance on this
-- database: the per-IP and per-subnet limits, the signup rate and end of
-- attack mode, and the proof-of-work solutions already spent.
--
-- The counters and spent solutions are UNLOGGED: written on every signup,
-- worth nothing after a minute (ten for a solution), and not worth a WAL
-- record each. After a crash of the server they start empty, as an
-- instance's in-process limits do after a restart.

-- One counter per kind ("ip", "subnet", "rate"), key and minute. key is a
-- keyed hash of the client's address or network, never the address. Rows
-- of minutes before the last are dead and purged.
CREATE UNLOGGED TABLE signup_counters (
    win      bigint  NOT NULL, -- the minute: Unix seconds / 60
    kind     text    NOT NULL,
    key_hash bytea   NOT NULL,
    hits     integer NOT NULL,
    PRIMARY KEY (win, kind, key_hash)
);

-- Proof-of-work solutions already spent, by a hash of their signature,
-- until their challenge expires.
CREATE UNLOGGED TABLE signup_spent (
    id_hash    bytea       PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX signup_spent_expires ON signup_spent (expires_at);

-- When attack mode ends: one row, id 1, once it was ever on.
CREATE TABLE signup_attack (
    id      integer     PRIMARY KEY CHECK (id = 1),
    ends_at timestamptz NOT NULL
);
