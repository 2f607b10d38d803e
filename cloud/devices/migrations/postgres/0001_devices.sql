CREATE TABLE devices (
    id               UUID PRIMARY KEY,
    owner_id         UUID NOT NULL,
    name             TEXT NOT NULL,
    kind             TEXT,
    tags             JSONB NOT NULL DEFAULT '[]',
    location         JSONB,
    metadata         JSONB NOT NULL DEFAULT '{}',
    status           TEXT NOT NULL DEFAULT 'never_seen',
    last_seen_at_ms  BIGINT,
    config_version   BIGINT NOT NULL DEFAULT 0,
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL,
    secret_hash      TEXT,
    enrollment_hash  TEXT UNIQUE,
    enrollment_expires_at_ms BIGINT
);
CREATE INDEX devices_owner ON devices (owner_id, id);
CREATE INDEX devices_tags ON devices USING GIN (tags);
