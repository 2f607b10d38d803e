-- The embedded telemetry store. Times are milliseconds since the Unix epoch (UTC).

-- One row per stored reading: the exactly-once key.
CREATE TABLE readings (
    device_id TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;

-- One row per metric value, clustered for range scans of one metric of one device.
CREATE TABLE points (
    device_id TEXT NOT NULL,
    metric    TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    value     REAL NOT NULL,
    PRIMARY KEY (device_id, metric, ts, seq)
) WITHOUT ROWID;

-- 1-minute (tier 60000) and 1-hour (tier 3600000) buckets, maintained at write time.
CREATE TABLE rollups (
    tier      INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    metric    TEXT NOT NULL,
    bucket    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    sum       REAL NOT NULL,
    min       REAL NOT NULL,
    max       REAL NOT NULL,
    PRIMARY KEY (tier, device_id, metric, bucket)
) WITHOUT ROWID;

-- The newest reading of each device (highest seq), for "latest" without a scan.
CREATE TABLE latest (
    device_id TEXT NOT NULL PRIMARY KEY,
    seq       INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    metrics   TEXT NOT NULL
) WITHOUT ROWID;

-- Every metric a device has reported, with its first and last time.
CREATE TABLE catalogue (
    device_id TEXT NOT NULL,
    metric    TEXT NOT NULL,
    first_ts  INTEGER NOT NULL,
    last_ts   INTEGER NOT NULL,
    PRIMARY KEY (device_id, metric)
) WITHOUT ROWID;

CREATE INDEX readings_by_ts ON readings (ts);
CREATE INDEX points_by_ts ON points (ts);
CREATE INDEX rollups_by_bucket ON rollups (tier, bucket);
