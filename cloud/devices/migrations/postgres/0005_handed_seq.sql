-- The highest reading seq handed to the bus for the device (set after the bus confirmed it) and
-- its value before the last update: ingest counts the readings of a batch at or below the
-- latter as `duplicates` (already received). One UPDATE sets both and returns the old value,
-- so concurrent batches of one device each see the watermark of the one before. Unindexed, so
-- these updates stay HOT like last_seen_at_ms's.
ALTER TABLE devices ADD COLUMN handed_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN handed_seq_before BIGINT NOT NULL DEFAULT 0;
