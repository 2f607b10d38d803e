//! The HTTP uplink: `POST /api/v1/devices/{id}/telemetry` with the device secret as a bearer
//! token; 202 means the devices service handed the batch on durably.
//!
//! Bodies are gzip-compressed JSON (`Content-Encoding: gzip`; a batch of host readings shrinks
//! to about a quarter, which matters on metered links). A server that answers 415 does not take gzip:
//! the uplink then sends plain JSON for the rest of the run and retries the batch at once, so an
//! older server never gets a batch quarantined for its encoding.
//!
//! Status mapping: 2xx accepted; 401 (credential rotated or not yet known) and 408/429/5xx are
//! retried, since none of them is the batch's fault and quarantining would empty the buffer;
//! any other 4xx (400, 403, 404, 413, 422) refuses the batch itself, which is quarantined.

use std::{
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use edgewatch_protocol::{Batch, DeviceId};
use reqwest::{StatusCode, header};

use super::{Delivery, Uplink};

#[derive(Debug)]
pub struct HttpUplink {
    client: reqwest::Client,
    url: String,
    secret: String,
    /// Cleared when the server refuses gzip with 415.
    gzip: AtomicBool,
}

impl HttpUplink {
    pub fn new(server: &str, device_id: DeviceId, secret: &str) -> crate::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("edgewatch-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let url = format!("{}/api/v1/devices/{device_id}/telemetry", server.trim_end_matches('/'));
        Ok(Self { client, url, secret: secret.to_owned(), gzip: AtomicBool::new(true) })
    }
}

/// Fast compression: most of the gain at a fraction of the CPU of the default level.
fn gzip(json: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(json.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(json)?;
    encoder.finish()
}

impl Uplink for HttpUplink {
    async fn send(&self, batch: &Batch) -> Delivery {
        let json = match serde_json::to_vec(batch) {
            Ok(json) => json,
            Err(e) => return Delivery::Refused { status: 0, reason: format!("encoding: {e}") },
        };
        let compress = self.gzip.load(Ordering::Relaxed);
        let mut request = self
            .client
            .post(&self.url)
            .bearer_auth(&self.secret)
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-request-id", format!("{}:{}", batch.device_id(), batch.first_seq()));
        request = match compress.then(|| gzip(&json)) {
            Some(Ok(body)) => request.header(header::CONTENT_ENCODING, "gzip").body(body),
            // Compressing into memory cannot fail short of allocation; send it plain then.
            Some(Err(_)) | None => request.body(json),
        };
        let response = request.send().await;
        let response = match response {
            Ok(response) => response,
            Err(err) => return Delivery::Retry { reason: describe(&err), after: None },
        };
        let status = response.status();
        if status.is_success() {
            return Delivery::Accepted;
        }
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE && compress {
            tracing::warn!(
                "The server does not accept gzip bodies; sending plain JSON from now on"
            );
            self.gzip.store(false, Ordering::Relaxed);
            return Delivery::Retry {
                reason: "the server refused gzip".into(),
                after: Some(Duration::ZERO),
            };
        }
        let after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        let reason =
            format!("HTTP {}: {}", status.as_u16(), text.chars().take(300).collect::<String>());
        let retry = status.is_server_error()
            || matches!(
                status,
                StatusCode::UNAUTHORIZED
                    | StatusCode::REQUEST_TIMEOUT
                    | StatusCode::TOO_MANY_REQUESTS
            );
        if retry {
            Delivery::Retry { reason, after }
        } else {
            Delivery::Refused { status: status.as_u16(), reason }
        }
    }
}

fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        io::Read,
        sync::{Arc, Mutex},
    };

    use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
    use edgewatch_protocol::{MetricName, Reading, Seq, Tags, Timestamp};

    use super::*;

    /// What a stub server saw: (Content-Encoding, the body as JSON).
    type Seen = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

    /// A server that refuses gzip bodies with 415 when `takes_gzip` is false.
    async fn server(takes_gzip: bool) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        let app = Router::new().route(
            "/api/v1/devices/{id}/telemetry",
            post(move |headers: HeaderMap, body: Bytes| {
                let log = Arc::clone(&log);
                async move {
                    let encoding = headers
                        .get(header::CONTENT_ENCODING)
                        .map(|v| v.to_str().unwrap().to_owned());
                    if encoding.is_some() && !takes_gzip {
                        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
                    }
                    let mut json = Vec::new();
                    match encoding.as_deref() {
                        Some("gzip") => {
                            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut json).unwrap();
                        }
                        _ => json.extend_from_slice(&body),
                    }
                    log.lock().unwrap().push((encoding, json));
                    StatusCode::ACCEPTED
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    fn batch(device: DeviceId) -> Batch {
        let readings = (1..=50)
            .map(|i| Reading {
                seq: Seq::new(i).unwrap(),
                ts: Timestamp::now(),
                metrics: BTreeMap::from([
                    (MetricName::parse("cpu.usage_pct").unwrap(), i as f64),
                    (MetricName::parse("mem.used_bytes").unwrap(), 7.3e8 + i as f64),
                ]),
                tags: Tags::new(),
            })
            .collect();
        Batch::new(device, readings).unwrap()
    }

    #[tokio::test]
    async fn batches_go_gzipped_and_inflate_to_the_same_json() {
        let (url, seen) = server(true).await;
        let device = DeviceId::new();
        let uplink = HttpUplink::new(&url, device, "secret").unwrap();
        let batch = batch(device);
        assert!(matches!(uplink.send(&batch).await, Delivery::Accepted));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0.as_deref(), Some("gzip"));
        assert_eq!(serde_json::from_slice::<Batch>(&seen[0].1).unwrap(), batch);
        let json = serde_json::to_vec(&batch).unwrap();
        let (plain, compressed) = (json.len(), gzip(&json).unwrap().len());
        assert!(compressed * 3 < plain, "gzip {compressed} bytes of {plain}");
    }

    #[tokio::test]
    async fn a_server_without_gzip_gets_the_batch_plain_and_nothing_is_quarantined() {
        let (url, seen) = server(false).await;
        let device = DeviceId::new();
        let uplink = HttpUplink::new(&url, device, "secret").unwrap();
        let batch = batch(device);
        assert!(matches!(uplink.send(&batch).await, Delivery::Retry { .. }));
        assert!(matches!(uplink.send(&batch).await, Delivery::Accepted));
        assert!(matches!(uplink.send(&batch).await, Delivery::Accepted));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|(encoding, _)| encoding.is_none()));
        assert_eq!(serde_json::from_slice::<Batch>(&seen[0].1).unwrap(), batch);
    }
}
