-- Events written in the same transaction as the registry change they describe; the relay
-- publishes them in id order and deletes each one after the bus confirmed it.
CREATE TABLE device_outbox (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    routing_key    TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    body           TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL
);
-- The config version the device says it applied (its status message).
ALTER TABLE devices ADD COLUMN applied_config_version INTEGER;
CREATE INDEX devices_online_seen ON devices (last_seen_at_ms) WHERE status = 'online';
