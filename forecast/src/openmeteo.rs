//! open-meteo client: hourly `temperature_2m` from the forecast API (`/v1/forecast`, with
//! `past_days` and `forecast_days`) and the archive API (`/v1/archive`, `start_date`/`end_date`).
//!
//! Why it looks like this: a device is often offline, and open-meteo rate-limits (429) and has bad
//! minutes (5xx). So every request has a timeout, 429/5xx/connection errors are retried with
//! exponential backoff, and every good answer is written to the SQLite [`cache`](crate::cache).
//! When the network fails or the answer is malformed, the last good answer for the same request is
//! served instead, marked `stale` with the reason, so the device keeps forecasting. Base URLs are
//! configurable so tests (and a mirror) can stand in for open-meteo.

use std::time::Duration;

use serde::Deserialize;
use time::{OffsetDateTime, PrimitiveDateTime, macros::format_description};

use crate::cache::{Cache, CacheError};

/// Where and how to reach open-meteo.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base of the forecast API, e.g. `https://api.open-meteo.com` (no trailing `/v1`).
    pub forecast_base_url: String,
    /// Base of the archive API, e.g. `https://archive-api.open-meteo.com`.
    pub archive_base_url: String,
    /// Per-request timeout (connect + answer).
    pub timeout: Duration,
    /// Retries after the first attempt for 429, 5xx and transport errors.
    pub retries: u32,
    /// First backoff; doubled on every retry (a `Retry-After` in seconds wins, capped at 30 s).
    pub backoff: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            forecast_base_url: "https://api.open-meteo.com".into(),
            archive_base_url: "https://archive-api.open-meteo.com".into(),
            timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// An hourly temperature series as open-meteo returns it, times in UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct HourlyTemperature {
    pub latitude: f64,
    pub longitude: f64,
    /// `(time, °C)`; hours open-meteo answered `null` for are left out.
    pub points: Vec<(OffsetDateTime, f64)>,
}

/// An answer: fresh from open-meteo, or the cached copy when it could not be reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Weather {
    pub hourly: HourlyTemperature,
    /// True when open-meteo could not be used and this is the last good answer.
    pub stale: bool,
    /// Why the answer is stale (the error that made the client fall back).
    pub stale_reason: Option<String>,
    /// When this answer was fetched from open-meteo.
    pub fetched_at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum WeatherError {
    #[error("open-meteo answered HTTP {status}: {reason}")]
    Status { status: u16, reason: String },
    #[error("open-meteo could not be reached: {0}")]
    Transport(String),
    #[error("open-meteo's answer is malformed: {0}")]
    Malformed(String),
    #[error("{0}; and nothing is cached for this request yet, so there is no stale answer either")]
    NoCache(Box<WeatherError>),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// The open-meteo client with its cache.
pub struct Client {
    http: reqwest::Client,
    config: Config,
    cache: Cache,
}

/// The JSON shape of an open-meteo answer (the parts we read).
#[derive(Deserialize)]
struct Answer {
    latitude: f64,
    longitude: f64,
    #[serde(default)]
    utc_offset_seconds: i64,
    hourly: HourlyBlock,
}

#[derive(Deserialize)]
struct HourlyBlock {
    time: Vec<TimeValue>,
    temperature_2m: Vec<Option<f64>>,
}

/// `timeformat=iso8601` (the default: `2024-01-01T00:00`, local to `utc_offset_seconds`) or
/// `timeformat=unixtime`.
#[derive(Deserialize)]
#[serde(untagged)]
enum TimeValue {
    Unix(i64),
    Iso(String),
}

#[derive(Deserialize)]
struct ErrorAnswer {
    reason: String,
}

/// Parses an open-meteo hourly answer; every `time` must have a `temperature_2m` and times must
/// increase.
pub fn parse_answer(body: &str) -> Result<HourlyTemperature, WeatherError> {
    let answer: Answer =
        serde_json::from_str(body).map_err(|e| WeatherError::Malformed(e.to_string()))?;
    let HourlyBlock { time, temperature_2m } = answer.hourly;
    if time.len() != temperature_2m.len() {
        return Err(WeatherError::Malformed(format!(
            "hourly.time has {} entries but hourly.temperature_2m has {}",
            time.len(),
            temperature_2m.len()
        )));
    }
    let iso = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let offset = time::Duration::seconds(answer.utc_offset_seconds);
    let mut points = Vec::with_capacity(time.len());
    let mut previous: Option<OffsetDateTime> = None;
    for (t, v) in time.into_iter().zip(temperature_2m) {
        let at = match t {
            TimeValue::Unix(s) => OffsetDateTime::from_unix_timestamp(s)
                .map_err(|e| WeatherError::Malformed(format!("time {s}: {e}")))?,
            TimeValue::Iso(text) => {
                PrimitiveDateTime::parse(&text, &iso)
                    .map_err(|_| {
                        WeatherError::Malformed(format!("time `{text}` is not YYYY-MM-DDTHH:MM"))
                    })?
                    .assume_utc()
                    - offset
            }
        };
        if previous.is_some_and(|p| p >= at) {
            return Err(WeatherError::Malformed(format!("time {at} does not increase")));
        }
        previous = Some(at);
        if let Some(v) = v.filter(|v| v.is_finite()) {
            points.push((at, v));
        }
    }
    Ok(HourlyTemperature { latitude: answer.latitude, longitude: answer.longitude, points })
}

fn check_coordinates(latitude: f64, longitude: f64) -> Result<(), WeatherError> {
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return Err(WeatherError::BadRequest(format!(
            "latitude must be in -90..=90 and longitude in -180..=180, got {latitude}, {longitude}"
        )));
    }
    Ok(())
}

impl Client {
    pub fn new(config: Config, cache: Cache) -> Result<Self, WeatherError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| WeatherError::Transport(e.to_string()))?;
        Ok(Self { http, config, cache })
    }

    /// Hourly temperature from `past_days` ago to `forecast_days` ahead (open-meteo allows up to
    /// 92 and 16).
    pub async fn forecast(
        &self,
        latitude: f64,
        longitude: f64,
        past_days: u8,
        forecast_days: u8,
    ) -> Result<Weather, WeatherError> {
        check_coordinates(latitude, longitude)?;
        if past_days > 92 || forecast_days > 16 {
            return Err(WeatherError::BadRequest(format!(
                "past_days must be at most 92 and forecast_days at most 16, got {past_days} and {forecast_days}"
            )));
        }
        let query = format!(
            "/v1/forecast?latitude={latitude}&longitude={longitude}&hourly=temperature_2m&past_days={past_days}&forecast_days={forecast_days}&timezone=GMT"
        );
        self.get(&self.config.forecast_base_url, &query).await
    }

    /// Observed hourly temperature between two dates (inclusive).
    pub async fn archive(
        &self,
        latitude: f64,
        longitude: f64,
        start: time::Date,
        end: time::Date,
    ) -> Result<Weather, WeatherError> {
        check_coordinates(latitude, longitude)?;
        if end < start {
            return Err(WeatherError::BadRequest(format!(
                "end_date {end} is before start_date {start}"
            )));
        }
        let query = format!(
            "/v1/archive?latitude={latitude}&longitude={longitude}&hourly=temperature_2m&start_date={start}&end_date={end}&timezone=GMT"
        );
        self.get(&self.config.archive_base_url, &query).await
    }

    /// Fetches `path_and_query` (the cache key); on failure serves the cached answer, stale.
    #[tracing::instrument(skip_all, fields(request = %path_and_query))]
    async fn get(&self, base: &str, path_and_query: &str) -> Result<Weather, WeatherError> {
        match self.fetch(base, path_and_query).await {
            Ok((body, hourly)) => {
                let fetched_at = OffsetDateTime::now_utc();
                self.cache.put(path_and_query, &body, fetched_at)?;
                Ok(Weather { hourly, stale: false, stale_reason: None, fetched_at })
            }
            // A request open-meteo itself rejects (400) is our mistake, not an outage.
            Err(err @ WeatherError::Status { status: 400, .. }) => Err(err),
            Err(err) => {
                tracing::warn!(error = %err, "Open-meteo failed, serving the cached answer");
                let Some((body, fetched_at)) = self.cache.get(path_and_query)? else {
                    return Err(WeatherError::NoCache(Box::new(err)));
                };
                let hourly = parse_answer(&body)?;
                Ok(Weather { hourly, stale: true, stale_reason: Some(err.to_string()), fetched_at })
            }
        }
    }

    async fn fetch(
        &self,
        base: &str,
        path_and_query: &str,
    ) -> Result<(String, HourlyTemperature), WeatherError> {
        let url = format!("{}{path_and_query}", base.trim_end_matches('/'));
        let mut attempt = 0;
        loop {
            let (err, retry_after) = match self.http.get(&url).send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(30)));
                    match response.text().await {
                        Ok(body) if status.is_success() => {
                            let hourly = parse_answer(&body)?;
                            return Ok((body, hourly));
                        }
                        Ok(body) => {
                            let reason = serde_json::from_str::<ErrorAnswer>(&body)
                                .map(|e| e.reason)
                                .unwrap_or_else(|_| body.chars().take(200).collect());
                            let err = WeatherError::Status { status: status.as_u16(), reason };
                            if !(status.as_u16() == 429 || status.is_server_error()) {
                                return Err(err);
                            }
                            (err, retry_after)
                        }
                        Err(e) => (WeatherError::Transport(e.to_string()), None),
                    }
                }
                Err(e) => (WeatherError::Transport(e.to_string()), None),
            };
            if attempt >= self.config.retries {
                return Err(err);
            }
            let wait = retry_after.unwrap_or(self.config.backoff * 2u32.saturating_pow(attempt));
            tracing::debug!(error = %err, attempt, wait_ms = wait.as_millis() as u64, "Retrying open-meteo");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iso_and_unix_times_and_skips_nulls() {
        let body = r#"{"latitude":47.6,"longitude":-122.3,"utc_offset_seconds":3600,
            "hourly":{"time":["2024-01-01T01:00","2024-01-01T02:00","2024-01-01T03:00"],
            "temperature_2m":[4.0,null,5.5]}}"#;
        let h = parse_answer(body).unwrap();
        assert_eq!(h.points.len(), 2);
        assert_eq!(h.points[0].0.unix_timestamp(), 1_704_067_200);
        assert_eq!(h.points[1].1, 5.5);
        let unix =
            r#"{"latitude":0,"longitude":0,"hourly":{"time":[0,3600],"temperature_2m":[1,2]}}"#;
        assert_eq!(parse_answer(unix).unwrap().points[1].0.unix_timestamp(), 3600);
    }

    #[test]
    fn malformed_answers_are_typed_errors() {
        for body in [
            "",
            "{",
            r#"{"latitude":0,"longitude":0}"#,
            r#"{"latitude":0,"longitude":0,"hourly":{"time":["2024-01-01T00:00"],"temperature_2m":[]}}"#,
            r#"{"latitude":0,"longitude":0,"hourly":{"time":["yesterday"],"temperature_2m":[1]}}"#,
            r#"{"latitude":0,"longitude":0,"hourly":{"time":[7200,3600],"temperature_2m":[1,2]}}"#,
        ] {
            assert!(matches!(parse_answer(body), Err(WeatherError::Malformed(_))), "{body}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_fails_cleanly(body in ".{0,200}") {
            let _ = parse_answer(&body);
        }
    }
}
