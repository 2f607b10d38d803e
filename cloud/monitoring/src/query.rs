//! The query side: ownership first, then the store; the limits that keep an answer bounded.

use std::sync::Arc;

use edgewatch_common::telemetry_store::{
    Agg, LatestReading, MetricSpan, Point, TelemetryStore, TimeRange, aggregate,
};
use edgewatch_protocol::{DeviceId, MetricName, Timestamp};

use crate::{
    error::MonitoringError,
    registry::{self, Registry},
};

/// A range request, parsed and checked.
#[derive(Debug, Clone)]
pub struct RangeRequest {
    pub metric: MetricName,
    pub range: TimeRange,
    /// Bucketed when set.
    pub step: Option<(i64, Agg)>,
    pub limit: usize,
}

#[derive(Clone)]
pub struct Queries {
    pub store: Arc<dyn TelemetryStore>,
    pub registry: Arc<dyn Registry>,
    /// Most points one answer holds.
    pub max_points: usize,
}

/// `30s`, `5m`, `1h`, `1d` (or `250ms`) in milliseconds.
pub fn parse_step(raw: &str) -> Result<i64, MonitoringError> {
    let bad = || {
        MonitoringError::InvalidField(
            "step",
            format!("`{raw}` is not a duration like 30s, 1m, 1h or 1d"),
        )
    };
    let split = raw.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = raw.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    number.checked_mul(unit_ms).filter(|ms| *ms > 0).ok_or_else(bad)
}

impl Queries {
    pub async fn latest(
        &self,
        token: &str,
        device: DeviceId,
    ) -> Result<LatestReading, MonitoringError> {
        registry::require(self.registry.as_ref(), token, device).await?;
        self.store.latest(device).await?.ok_or(MonitoringError::NoReadings)
    }

    pub async fn metrics(
        &self,
        token: &str,
        device: DeviceId,
    ) -> Result<Vec<MetricSpan>, MonitoringError> {
        registry::require(self.registry.as_ref(), token, device).await?;
        Ok(self.store.metrics(device).await?)
    }

    /// Checks a request's bounds before anyone is asked anything.
    pub fn check(&self, request: &RangeRequest) -> Result<(), MonitoringError> {
        if request.limit == 0 || request.limit > self.max_points {
            return Err(MonitoringError::InvalidField(
                "limit",
                format!("limit must be between 1 and {}", self.max_points),
            ));
        }
        if let Some((step_ms, _)) = request.step {
            if step_ms < 1_000 {
                return Err(MonitoringError::InvalidField(
                    "step",
                    "step must be at least 1s".into(),
                ));
            }
            let span = request.range.to.as_millis() - request.range.from.as_millis();
            let buckets = span / step_ms + 1;
            if buckets > self.max_points as i64 {
                return Err(MonitoringError::InvalidField(
                    "step",
                    format!(
                        "this range at this step is {buckets} points; the limit is {}: use a larger step or a shorter range",
                        self.max_points
                    ),
                ));
            }
        }
        Ok(())
    }

    pub async fn range(
        &self,
        token: &str,
        device: DeviceId,
        request: &RangeRequest,
    ) -> Result<Vec<Point>, MonitoringError> {
        self.check(request)?;
        registry::require(self.registry.as_ref(), token, device).await?;
        Ok(match request.step {
            Some((step_ms, agg)) => {
                aggregate(self.store.as_ref(), device, &request.metric, request.range, step_ms, agg)
                    .await?
            }
            None => self.store.raw(device, &request.metric, request.range, request.limit).await?,
        })
    }
}

/// `from`/`to` with their defaults: the last hour.
pub fn range_of(
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> Result<TimeRange, MonitoringError> {
    let to = to.unwrap_or_else(Timestamp::now);
    let from = match from {
        Some(from) => from,
        None => Timestamp::from_millis(to.as_millis() - 3_600_000)
            .map_err(|e| MonitoringError::InvalidField("from", e.to_string()))?,
    };
    TimeRange::new(from, to).map_err(|e| MonitoringError::InvalidField("from", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_with_units() {
        assert_eq!(parse_step("30s").unwrap(), 30_000);
        assert_eq!(parse_step("1m").unwrap(), 60_000);
        assert_eq!(parse_step("2h").unwrap(), 7_200_000);
        assert_eq!(parse_step("1d").unwrap(), 86_400_000);
        assert_eq!(parse_step("250ms").unwrap(), 250);
        for bad in ["", "m", "1", "1w", "-1m", "0s", "99999999999999999999s"] {
            assert!(parse_step(bad).is_err(), "{bad}");
        }
    }
}
