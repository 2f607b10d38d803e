//! Timestamps: milliseconds since the Unix epoch, UTC. On the wire they are RFC 3339 strings with
//! milliseconds and a `Z` (`2026-11-26T20:00:00.123Z`); any RFC 3339 offset is accepted on input
//! and normalised to UTC, finer precision is truncated to the millisecond.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use time::{OffsetDateTime, format_description::well_known::Rfc3339, macros::format_description};

/// A point in time with millisecond precision, between years 1 and 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("`{0}` is not an RFC 3339 time (expected e.g. 2026-11-26T20:00:00.123Z)")]
    Format(String),
    #[error("{0} ms since the epoch is outside the years 1..=9999")]
    OutOfRange(i64),
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z in ms since the epoch.
const MIN_MS: i64 = -62_135_596_800_000;
const MAX_MS: i64 = 253_402_300_799_999;

impl Timestamp {
    pub fn now() -> Self {
        let ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        // The clock is inside 1..=9999 for the next few millennia.
        Self(ms as i64)
    }

    pub fn from_millis(ms: i64) -> Result<Self, TimestampError> {
        if (MIN_MS..=MAX_MS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(TimestampError::OutOfRange(ms))
        }
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// The start of the bucket of `width_ms` that holds this time (buckets are aligned on the epoch).
    pub fn truncate(self, width_ms: i64) -> Self {
        Self(self.0 - self.0.rem_euclid(width_ms.max(1)))
    }

    pub fn parse(input: &str) -> Result<Self, TimestampError> {
        let parsed = OffsetDateTime::parse(input, &Rfc3339)
            .map_err(|_| TimestampError::Format(crate::ids::truncate(input)))?;
        Self::from_millis((parsed.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    fn to_datetime(self) -> OffsetDateTime {
        // In range by construction.
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        match self.to_datetime().format(&format) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, TimestampError> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        let ts = Timestamp::parse("2026-11-26T20:00:00.123Z").unwrap();
        assert_eq!(ts.to_string(), "2026-11-26T20:00:00.123Z");
        assert_eq!(Timestamp::from_millis(0).unwrap().to_string(), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn normalises_offsets_and_truncates_precision() {
        let ts = Timestamp::parse("2026-11-26T21:00:00.123456+01:00").unwrap();
        assert_eq!(ts.to_string(), "2026-11-26T20:00:00.123Z");
    }

    #[test]
    fn rejects_non_rfc3339_and_out_of_range() {
        for bad in ["", "yesterday", "2026-11-26", "2026-11-26 20:00:00", "2026-13-01T00:00:00Z"] {
            assert!(matches!(Timestamp::parse(bad), Err(TimestampError::Format(_))), "{bad}");
        }
        assert!(Timestamp::from_millis(i64::MAX).is_err());
        assert!(Timestamp::from_millis(MAX_MS).is_ok());
        assert!(Timestamp::from_millis(MIN_MS).is_ok());
        assert_eq!(Timestamp::from_millis(MIN_MS).unwrap().to_string(), "0001-01-01T00:00:00.000Z");
    }

    #[test]
    fn truncates_to_buckets() {
        let ts = Timestamp::parse("2026-11-26T20:07:31.500Z").unwrap();
        assert_eq!(ts.truncate(60_000).to_string(), "2026-11-26T20:07:00.000Z");
        assert_eq!(ts.truncate(3_600_000).to_string(), "2026-11-26T20:00:00.000Z");
        let before_epoch = Timestamp::from_millis(-1).unwrap();
        assert_eq!(before_epoch.truncate(1000).as_millis(), -1000);
    }
}
