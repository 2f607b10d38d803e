ALTER TABLE devices ADD COLUMN config TEXT NOT NULL DEFAULT '{}';
ALTER TABLE devices ADD COLUMN config_updated_at_ms INTEGER;
