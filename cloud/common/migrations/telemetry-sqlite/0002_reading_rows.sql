-- A row per reading instead of a row per point: the metrics of a reading travel together as one
-- JSON object (`{"name":value,...}`), so a reading of 10 metrics costs one row and three B-tree
-- entries instead of eleven rows and twenty-two entries. The raw range query of one metric reads
-- the device's readings in the range and picks the metric out.
--
-- Existing databases are converted in place, inside the migration's transaction: the points of
-- each reading are folded into its object (values printed with 17 significant digits, which
-- round-trips every double exactly), readings that had no points keep an empty object.

CREATE TABLE readings_v2 (
    device_id TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    metrics   TEXT NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;

INSERT INTO readings_v2 (device_id, seq, ts, metrics)
SELECT device_id, seq, min(ts),
       '{' || group_concat(json_quote(metric) || ':' || printf('%!.17g', value), ',') || '}'
FROM points
GROUP BY device_id, seq;

INSERT OR IGNORE INTO readings_v2 (device_id, seq, ts, metrics)
SELECT device_id, seq, ts, '{}' FROM readings;

DROP TABLE points;
DROP TABLE readings;
ALTER TABLE readings_v2 RENAME TO readings;

-- Range scans of one device, and retention by age across devices.
CREATE INDEX readings_by_device_ts ON readings (device_id, ts, seq);
CREATE INDEX readings_by_ts ON readings (ts);
