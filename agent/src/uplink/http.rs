//! The HTTP uplink: `POST /api/v1/devices/{id}/telemetry` with the device secret as a bearer
//! token; 202 means the devices service handed the batch on durably.
//!
//! Bodies are plain JSON: the devices service does not decode `Content-Encoding: gzip` (its
//! router has no decompression layer), and a gzip body would be refused as malformed.
//!
//! Status mapping: 2xx accepted; 401 (credential rotated or not yet known) and 408/429/5xx are
//! retried, since none of them is the batch's fault and quarantining would empty the buffer;
//! any other 4xx (400, 403, 404, 413, 422) refuses the batch itself, which is quarantined.

use std::time::Duration;

use edgewatch_protocol::{Batch, DeviceId};
use reqwest::{StatusCode, header};

use super::{Delivery, Uplink};

#[derive(Debug, Clone)]
pub struct HttpUplink {
    client: reqwest::Client,
    url: String,
    secret: String,
}

impl HttpUplink {
    pub fn new(server: &str, device_id: DeviceId, secret: &str) -> crate::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("edgewatch-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let url = format!("{}/api/v1/devices/{device_id}/telemetry", server.trim_end_matches('/'));
        Ok(Self { client, url, secret: secret.to_owned() })
    }
}

impl Uplink for HttpUplink {
    async fn send(&self, batch: &Batch) -> Delivery {
        let body = match serde_json::to_vec(batch) {
            Ok(body) => body,
            Err(e) => return Delivery::Refused { status: 0, reason: format!("encoding: {e}") },
        };
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.secret)
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-request-id", format!("{}:{}", batch.device_id(), batch.first_seq()))
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(err) => return Delivery::Retry { reason: describe(&err), after: None },
        };
        let status = response.status();
        if status.is_success() {
            return Delivery::Accepted;
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
