//! The contract's error body: `{"error": {"code", "message", "fields"?}}` with the right status.
//! Handlers return `Result<_, ApiError>`; 5xx causes are logged here with the request's span and
//! never sent to the client. [`ApiJson`] is axum's `Json` with its rejections mapped to this body
//! (400 malformed, 413 too large, 415 wrong content type, 422 wrong field), so no client ever sees
//! axum's plain-text errors.

use std::{borrow::Cow, collections::BTreeMap, fmt};

use axum::{
    Json,
    extract::{
        FromRequest, Request,
        rejection::{BytesRejection, JsonRejection},
    },
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use edgewatch_protocol::BatchError;
use serde::{Serialize, de::DeserializeOwned};

/// An error answer of the public API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    fields: BTreeMap<String, String>,
    retry_after_s: Option<u64>,
    /// For the log only.
    cause: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    fields: &'a BTreeMap<String, String>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            fields: BTreeMap::new(),
            retry_after_s: None,
            cause: None,
        }
    }

    /// 400: the request could not be read at all.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_request", message)
    }

    /// 401: no or bad credentials.
    pub fn unauthorized(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403: authenticated, but not yours.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409.
    pub fn conflict(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 422 naming one field.
    pub fn invalid_field(field: impl Into<String>, why: impl Into<String>) -> Self {
        let (field, why) = (field.into(), why.into());
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{field} {why}"))
            .with_field(field, why)
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after_s: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; retry later")
            .with_retry_after(retry_after_s)
    }

    /// 503 with `Retry-After`: a dependency is down; the cause is logged, not sent.
    pub fn unavailable(dependency: &str, cause: impl fmt::Display) -> Self {
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{dependency} is unavailable; nothing was stored, retry later"),
        )
        .with_retry_after(5);
        err.cause = Some(cause.to_string());
        err
    }

    /// 500: a bug or an unexpected failure; the cause is logged, the client gets a generic message.
    pub fn internal(cause: impl fmt::Display) -> Self {
        let mut err = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server logged it with this request's x-request-id",
        );
        err.cause = Some(cause.to_string());
        err
    }

    pub fn with_field(mut self, field: impl Into<String>, why: impl Into<String>) -> Self {
        self.fields.insert(field.into(), why.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        &self.code
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(
                status = self.status.as_u16(),
                code = %self.code,
                cause = self.cause.as_deref().unwrap_or(""),
                "Request failed"
            );
        }
        let body = Body {
            error: Inner { code: &self.code, message: &self.message, fields: &self.fields },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<BatchError> for ApiError {
    fn from(err: BatchError) -> Self {
        let status = match err {
            BatchError::TooLarge { .. } | BatchError::TooManyReadings { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            BatchError::Malformed { .. } => StatusCode::BAD_REQUEST,
            BatchError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let mut api = Self::new(status, err.code(), err.to_string());
        if let (Some(field), BatchError::Invalid { problem, .. }) = (err.field(), &err) {
            api = api.with_field(field, problem.to_string());
        } else if let Some(field) = err.field() {
            api = api.with_field(field, err.to_string());
        }
        api
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => {
                // "Failed to deserialize the JSON body into the target type: name: invalid type ..."
                let text = e.body_text();
                let detail = text.split_once(": ").map_or(text.as_str(), |(_, rest)| rest);
                match detail.split_once(": ") {
                    Some((field, why)) if !field.contains(' ') => Self::invalid_field(field, why),
                    _ => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail),
                }
            }
            JsonRejection::JsonSyntaxError(e) => {
                Self::malformed(format!("malformed JSON: {}", e.body_text()))
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::too_large("the request body is larger than this endpoint accepts")
            }
            other => Self::malformed(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::too_large("the request body is larger than this endpoint accepts")
        } else {
            Self::malformed(rejection.body_text())
        }
    }
}

/// `Json<T>` whose rejections are the contract's error body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}
