CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    owner_id         TEXT NOT NULL,
    name             TEXT NOT NULL,
    kind             TEXT,
    tags             TEXT NOT NULL DEFAULT '[]',
    location         TEXT,
    metadata         TEXT NOT NULL DEFAULT '{}',
    status           TEXT NOT NULL DEFAULT 'never_seen',
    last_seen_at_ms  INTEGER,
    config_version   INTEGER NOT NULL DEFAULT 0,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    secret_hash      TEXT,
    enrollment_hash  TEXT UNIQUE,
    enrollment_expires_at_ms INTEGER
);
CREATE INDEX devices_owner ON devices (owner_id, id);
