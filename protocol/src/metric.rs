//! Metric names: `[a-z0-9_.]{1,128}`, e.g. `cpu.usage_pct` or `sensor.greenhouse.temp_c`. The dot
//! separates levels for people and the dashboard; the store treats the name as one opaque key.

use std::{borrow::Borrow, fmt};

use serde::{Deserialize, Deserializer, Serialize, de};

pub const MAX_METRIC_NAME_LEN: usize = 128;

/// A valid metric name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct MetricName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is {0} characters long; the limit is {MAX_METRIC_NAME_LEN}")]
    TooLong(usize),
    #[error("`{name}` has the character {found:?}; only a-z, 0-9, `_` and `.` are allowed")]
    BadChar { name: String, found: char },
}

impl MetricName {
    pub fn parse(input: impl Into<String>) -> Result<Self, NameError> {
        let name = input.into();
        check(&name)?;
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Turns free text (a sensor id, an interface or mount name) into a name segment: lower-case,
    /// every other character becomes `_`, so `eth0`, `/boot/firmware` and `Greenhouse-1` map to
    /// `eth0`, `_boot_firmware` and `greenhouse_1`.
    pub fn sanitize_segment(text: &str) -> String {
        text.chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '_' }
            })
            .collect()
    }
}

fn check(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_METRIC_NAME_LEN {
        return Err(NameError::TooLong(name.chars().count()));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '.'))
    {
        Some(found) => Err(NameError::BadChar { name: crate::ids::truncate(name), found }),
        None => Ok(()),
    }
}

impl fmt::Display for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for MetricName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MetricName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, NameError> {
        Self::parse(value)
    }
}

impl TryFrom<&str> for MetricName {
    type Error = NameError;
    fn try_from(value: &str) -> Result<Self, NameError> {
        Self::parse(value)
    }
}

impl<'de> Deserialize<'de> for MetricName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_names() {
        for ok in
            ["cpu.usage_pct", "cpu.core3.usage_pct", "load.1m", "sensor.greenhouse.temp_c", "a"]
        {
            assert!(MetricName::parse(ok).is_ok(), "{ok}");
        }
        assert!(MetricName::parse("x".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_with_the_reason() {
        assert_eq!(MetricName::parse(""), Err(NameError::Empty));
        assert_eq!(MetricName::parse("x".repeat(129)), Err(NameError::TooLong(129)));
        assert!(matches!(MetricName::parse("CPU"), Err(NameError::BadChar { found: 'C', .. })));
        assert!(matches!(
            MetricName::parse("cpu usage"),
            Err(NameError::BadChar { found: ' ', .. })
        ));
        assert!(matches!(MetricName::parse("temp°c"), Err(NameError::BadChar { found: '°', .. })));
    }

    #[test]
    fn sanitizes_free_text_into_valid_segments() {
        assert_eq!(MetricName::sanitize_segment("Greenhouse-1"), "greenhouse_1");
        assert_eq!(MetricName::sanitize_segment("/boot/firmware"), "_boot_firmware");
        assert!(MetricName::parse(MetricName::sanitize_segment("Ünïcode näme")).is_ok());
    }
}
