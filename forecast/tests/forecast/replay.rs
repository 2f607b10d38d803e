//! A local stand-in for open-meteo on 127.0.0.1:0. It answers `/v1/forecast` and `/v1/archive`
//! with open-meteo-shaped JSON built from `data/seattle-weather-hourly-normals.csv` (its "now" is
//! 2010-06-15T00:00Z), and can be scripted to fail the next requests (429, 500, malformed, partial
//! JSON, slow) to exercise retries and the stale cache.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use edgewatch_forecast::table;
use time::{
    Date, OffsetDateTime,
    macros::{datetime, format_description},
};

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Behaviour {
    Status(u16),
    /// 429 with `Retry-After: 0`.
    RateLimited,
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with the real answer cut in half.
    Partial,
    /// Answers correctly after this delay.
    Slow(Duration),
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Behaviour>,
    /// Used when the script is empty; `None` = answer correctly.
    always: Option<Behaviour>,
    requests: Vec<HashMap<String, String>>,
}

#[derive(Clone)]
pub struct Replay {
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
    data: Arc<Vec<(OffsetDateTime, f64)>>,
}

pub const NOW: OffsetDateTime = datetime!(2010-06-15 00:00 UTC);

pub fn normals() -> Vec<(OffsetDateTime, f64)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/seattle-weather-hourly-normals.csv"
    ))
    .unwrap();
    table::read(&text, "temperature").unwrap()
}

impl Replay {
    pub async fn start() -> Replay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let replay = Replay {
            base_url: format!("http://{addr}"),
            shared: Arc::default(),
            data: Arc::new(normals()),
        };
        let app = Router::new()
            .route("/v1/forecast", get(forecast))
            .route("/v1/archive", get(archive))
            .with_state(replay.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        replay
    }

    /// The next requests fail in this order, then answers are correct again.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.shared.lock().unwrap().script.extend(behaviours);
    }

    /// Every request fails this way from now on (`None`: answers correctly).
    pub fn always(&self, behaviour: Option<Behaviour>) {
        self.shared.lock().unwrap().always = behaviour;
    }

    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// The answer open-meteo would give for hours in `[from, to)`.
    pub fn body(&self, from: OffsetDateTime, to: OffsetDateTime) -> String {
        let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]");
        let rows: Vec<&(OffsetDateTime, f64)> =
            self.data.iter().filter(|(t, _)| *t >= from && *t < to).collect();
        serde_json::json!({
            "latitude": 47.6,
            "longitude": -122.3,
            "generationtime_ms": 0.05,
            "utc_offset_seconds": 0,
            "timezone": "GMT",
            "timezone_abbreviation": "GMT",
            "elevation": 56.0,
            "hourly_units": {"time": "iso8601", "temperature_2m": "°C"},
            "hourly": {
                "time": rows.iter().map(|(t, _)| t.format(&fmt).unwrap()).collect::<Vec<_>>(),
                "temperature_2m": rows.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            }
        })
        .to_string()
    }

    async fn answer(
        &self,
        query: HashMap<String, String>,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Response {
        let behaviour = {
            let mut shared = self.shared.lock().unwrap();
            shared.requests.push(query);
            shared.script.pop_front().or_else(|| shared.always.clone())
        };
        let json = [(header::CONTENT_TYPE, "application/json")];
        match behaviour {
            None => (json, self.body(from, to)).into_response(),
            Some(Behaviour::Slow(delay)) => {
                tokio::time::sleep(delay).await;
                (json, self.body(from, to)).into_response()
            }
            Some(Behaviour::Status(code)) => (
                StatusCode::from_u16(code).unwrap(),
                json,
                r#"{"error":true,"reason":"replay says no"}"#,
            )
                .into_response(),
            Some(Behaviour::RateLimited) => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "0")],
                r#"{"error":true,"reason":"Minutely API request limit exceeded"}"#,
            )
                .into_response(),
            Some(Behaviour::Malformed) => (json, "<html>gateway says hi</html>").into_response(),
            Some(Behaviour::Partial) => {
                let body = self.body(from, to);
                (json, body[..body.len() / 2].to_owned()).into_response()
            }
        }
    }
}

fn bad(reason: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!(r#"{{"error":true,"reason":"{reason}"}}"#)).into_response()
}

async fn forecast(
    State(replay): State<Replay>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.get("hourly").map(String::as_str) != Some("temperature_2m") {
        return bad("hourly must be temperature_2m");
    }
    let days = |k: &str, default: i64| q.get(k).map_or(Some(default), |v| v.parse::<i64>().ok());
    let (Some(past), Some(ahead)) = (days("past_days", 0), days("forecast_days", 7)) else {
        return bad("past_days and forecast_days must be integers");
    };
    let from = NOW - time::Duration::days(past);
    let to = NOW + time::Duration::days(ahead);
    replay.answer(q, from, to).await
}

async fn archive(
    State(replay): State<Replay>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let date = |k: &str| {
        q.get(k).and_then(|v| Date::parse(v, format_description!("[year]-[month]-[day]")).ok())
    };
    let (Some(start), Some(end)) = (date("start_date"), date("end_date")) else {
        return bad("start_date and end_date are required (YYYY-MM-DD)");
    };
    let from = start.midnight().assume_utc();
    let to = end.midnight().assume_utc() + time::Duration::days(1);
    replay.answer(q, from, to).await
}
