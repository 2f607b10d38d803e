ALTER TABLE devices ADD COLUMN config JSONB NOT NULL DEFAULT '{}';
ALTER TABLE devices ADD COLUMN config_updated_at_ms BIGINT;
