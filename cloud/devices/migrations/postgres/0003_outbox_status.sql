-- Events written in the same transaction as the registry change they describe; the relay
-- publishes them in id order and deletes each one after the bus confirmed it.
CREATE TABLE device_outbox (
    id             BIGSERIAL PRIMARY KEY,
    routing_key    TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    body           TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL
);
-- The config version the device says it applied (its status message).
ALTER TABLE devices ADD COLUMN applied_config_version BIGINT;
-- No index on last_seen_at_ms: every ingest updates it, and an unindexed column keeps those
-- updates HOT (no index writes). The offline sweep reads the online devices through the
-- (status, id) index of 0004 instead.
