//! Ingest over HTTP, for the `edgewatch-broker` binary run apart from the devices service: each
//! message is posted to `POST {devices}/api/v1/devices/{id}/telemetry` (or `/events`) with the
//! device's own credential as bearer token, exactly what an HTTP agent sends. The devices service
//! answers 202 only after the bus confirmed the batch, so a 202 is the right moment for PUBACK.
//!
//! Answers: 2xx is [`Outcome::Accepted`]; 400, 403 (another device's batch), 413, 415 and 422 are
//! final refusals (acknowledged and dropped, as the bridge drops invalid batches); 401 means the
//! credential was revoked; anything else (503, a timeout, no connection, 404 from a devices
//! service without that endpoint) is "not now" and leaves the message unacknowledged.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, header::CONTENT_TYPE};

use super::{Ingest, IngestError, Outcome, Publication};

/// The HTTP adapter (see the module docs).
pub struct DevicesHttpIngest {
    client: reqwest::Client,
    base_url: String,
}

impl DevicesHttpIngest {
    /// `base_url` is the devices service (`http://host:port`); `timeout` bounds one request,
    /// bus confirm included.
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { client, base_url: base_url.trim_end_matches('/').to_owned() }
    }
}

#[async_trait]
impl Ingest for DevicesHttpIngest {
    #[tracing::instrument(skip_all, fields(device_id = %publication.device, kind = %publication.kind), err)]
    async fn accept(&self, publication: Publication) -> Result<Outcome, IngestError> {
        let url =
            format!("{}/api/v1/devices/{}/{}", self.base_url, publication.device, publication.kind);
        let answer = self
            .client
            .post(url)
            .bearer_auth(&publication.secret)
            .header(CONTENT_TYPE, "application/json")
            .body(publication.payload)
            .send()
            .await
            .map_err(|e| IngestError::Unavailable(format!("devices service: {e}")))?;
        match answer.status() {
            status if status.is_success() => Ok(Outcome::Accepted),
            StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::UNPROCESSABLE_ENTITY => Ok(Outcome::Refused("invalid_batch")),
            StatusCode::FORBIDDEN => Ok(Outcome::Refused("wrong_device")),
            StatusCode::UNAUTHORIZED => Err(IngestError::Denied),
            other => Err(IngestError::Unavailable(format!("devices service answered {other}"))),
        }
    }
}
