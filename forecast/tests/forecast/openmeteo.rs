//! The open-meteo client against the replay server: good answers, retries, errors, and the
//! offline cache.

use std::{path::PathBuf, time::Duration};

use edgewatch_forecast::{
    cache::Cache,
    openmeteo::{Client, Config, WeatherError},
    series,
};
use time::macros::{date, datetime};

use crate::replay::{Behaviour, NOW, Replay, normals};

fn config(base: &str) -> Config {
    Config {
        forecast_base_url: base.to_owned(),
        archive_base_url: base.to_owned(),
        timeout: Duration::from_millis(500),
        retries: 2,
        backoff: Duration::from_millis(5),
    }
}

fn cache_file(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("forecast-openmeteo");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn client(replay: &Replay) -> Client {
    Client::new(config(&replay.base_url), Cache::in_memory().unwrap()).unwrap()
}

#[tokio::test]
async fn forecast_returns_the_real_hours_around_now() {
    let replay = Replay::start().await;
    let weather = client(&replay).forecast(47.6, -122.3, 2, 3).await.unwrap();
    assert!(!weather.stale);
    let points = &weather.hourly.points;
    assert_eq!(points.len(), 5 * 24);
    assert_eq!(points[0].0, NOW - time::Duration::days(2));
    let data = normals();
    let expected = data.iter().find(|(t, _)| *t == points[0].0).unwrap().1;
    assert_eq!(points[0].1, expected);
    assert_eq!(weather.hourly.latitude, 47.6);
    let request = &replay.requests()[0];
    assert_eq!(request["hourly"], "temperature_2m");
    assert_eq!(request["past_days"], "2");
    assert_eq!(request["forecast_days"], "3");
}

#[tokio::test]
async fn archive_returns_the_requested_days() {
    let replay = Replay::start().await;
    let weather = client(&replay)
        .archive(47.6, -122.3, date!(2010 - 03 - 01), date!(2010 - 03 - 07))
        .await
        .unwrap();
    assert_eq!(weather.hourly.points.len(), 7 * 24);
    assert_eq!(weather.hourly.points[0].0, datetime!(2010-03-01 00:00 UTC));
    assert_eq!(replay.requests()[0]["start_date"], "2010-03-01");
    assert_eq!(replay.requests()[0]["end_date"], "2010-03-07");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let replay = Replay::start().await;
    replay.script([Behaviour::RateLimited, Behaviour::Status(503)]);
    let weather = client(&replay).forecast(47.6, -122.3, 1, 1).await.unwrap();
    assert!(!weather.stale);
    assert_eq!(weather.hourly.points.len(), 48);
    assert_eq!(replay.requests().len(), 3, "two failures, then the answer");
}

#[tokio::test]
async fn exhausted_retries_without_a_cache_are_a_typed_error() {
    let replay = Replay::start().await;
    replay.always(Some(Behaviour::Status(500)));
    let err = client(&replay).forecast(47.6, -122.3, 1, 1).await.unwrap_err();
    match err {
        WeatherError::NoCache(inner) => {
            assert!(matches!(*inner, WeatherError::Status { status: 500, .. }), "{inner}")
        }
        other => panic!("{other}"),
    }
    assert_eq!(replay.requests().len(), 3, "the first try and two retries");

    replay.always(Some(Behaviour::RateLimited));
    let err = client(&replay).forecast(47.6, -122.3, 1, 1).await.unwrap_err();
    assert!(err.to_string().contains("429") && err.to_string().contains("Minutely"), "{err}");
}

#[tokio::test]
async fn a_rejected_request_is_not_retried_nor_served_stale() {
    let replay = Replay::start().await;
    let client = client(&replay);
    client.forecast(47.6, -122.3, 1, 1).await.unwrap();
    replay.always(Some(Behaviour::Status(400)));
    let err = client.forecast(47.6, -122.3, 1, 1).await.unwrap_err();
    assert!(
        matches!(err, WeatherError::Status { status: 400, ref reason } if reason == "replay says no"),
        "{err}"
    );
    assert_eq!(replay.requests().len(), 2);
    // Our own bad arguments never reach the network.
    assert!(matches!(client.forecast(91.0, 0.0, 1, 1).await, Err(WeatherError::BadRequest(_))));
    assert!(matches!(client.forecast(0.0, 0.0, 93, 1).await, Err(WeatherError::BadRequest(_))));
    assert!(matches!(
        client.archive(0.0, 0.0, date!(2010 - 01 - 02), date!(2010 - 01 - 01)).await,
        Err(WeatherError::BadRequest(_))
    ));
    assert_eq!(replay.requests().len(), 2);
}

#[tokio::test]
async fn malformed_and_partial_answers_fall_back_to_the_cache() {
    let replay = Replay::start().await;
    let client = client(&replay);
    // Nothing cached yet: a typed error naming the problem.
    replay.script([Behaviour::Partial]);
    let err = client.forecast(47.6, -122.3, 1, 1).await.unwrap_err();
    assert!(
        matches!(&err, WeatherError::NoCache(inner) if matches!(**inner, WeatherError::Malformed(_))),
        "{err}"
    );

    let fresh = client.forecast(47.6, -122.3, 1, 1).await.unwrap();
    for behaviour in [Behaviour::Malformed, Behaviour::Partial] {
        replay.script([behaviour.clone()]);
        let stale = client.forecast(47.6, -122.3, 1, 1).await.unwrap();
        assert!(stale.stale, "{behaviour:?}");
        assert!(stale.stale_reason.as_deref().unwrap().contains("malformed"), "{stale:?}");
        assert_eq!(stale.hourly, fresh.hourly);
        assert_eq!(stale.fetched_at.unix_timestamp(), fresh.fetched_at.unix_timestamp());
    }
}

#[tokio::test]
async fn an_offline_device_keeps_forecasting_from_the_cache_file() {
    let replay = Replay::start().await;
    let path = cache_file("offline");
    let fresh = {
        let client = Client::new(config(&replay.base_url), Cache::open(&path).unwrap()).unwrap();
        client.forecast(47.6, -122.3, 7, 2).await.unwrap()
    };
    // The device restarts with no network: nothing listens on this port any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let client = Client::new(config(&dead), Cache::open(&path).unwrap()).unwrap();
    let stale = client.forecast(47.6, -122.3, 7, 2).await.unwrap();
    assert!(stale.stale);
    assert!(stale.stale_reason.as_deref().unwrap().contains("could not be reached"), "{stale:?}");
    assert_eq!(stale.hourly, fresh.hourly);
    // A request never made before has nothing to fall back on.
    assert!(matches!(client.forecast(47.6, -122.3, 1, 1).await, Err(WeatherError::NoCache(_))));

    // And the stale weather still drives a forecast (as covariate of a device series that
    // follows the outdoor temperature).
    let hourly = &stale.hourly.points;
    let history: Vec<series::Point> =
        hourly.iter().filter(|(t, _)| *t < NOW).map(|(t, v)| (*t, 0.5 * v + 18.0)).collect();
    let forecast = series::forecast(
        &history,
        &series::Request { horizon: Duration::from_secs(24 * 3600), covariate: Some(hourly) },
    )
    .unwrap();
    assert_eq!(forecast.points.len(), 24);
    assert!(forecast.model.ends_with("+covariate"), "{:?}", forecast.candidates);
    let truth = |t| 0.5 * hourly.iter().find(|(at, _)| *at == t).unwrap().1 + 18.0;
    for p in &forecast.points {
        assert!((p.value - truth(p.ts)).abs() < 0.5, "{p:?}");
    }
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_served_stale() {
    let replay = Replay::start().await;
    let client = client(&replay);
    client.forecast(47.6, -122.3, 1, 1).await.unwrap();
    replay.always(Some(Behaviour::Slow(Duration::from_secs(3))));
    let started = std::time::Instant::now();
    let stale = client.forecast(47.6, -122.3, 1, 1).await.unwrap();
    assert!(stale.stale);
    // Three attempts of 0.5 s each, not three of 3 s.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}
