-- The highest reading seq handed to the bus for the device (set after the bus confirmed it) and
-- its value before the last update: ingest counts the readings of a batch at or below the
-- latter as `duplicates` (already received). One UPDATE sets both and returns the old value.
ALTER TABLE devices ADD COLUMN handed_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN handed_seq_before INTEGER NOT NULL DEFAULT 0;
