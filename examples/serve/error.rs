//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with the HTTP
//! status that fits (4xx for what the client sent, 5xx for the server's own failures), so that
//! OpenAI clients raise their usual exceptions.

use std::borrow::Cow;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// One failed request: what the client is told, and with which status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A sentence saying what was wrong and, where it helps, how to fix it.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, `server_error`, ...).
    pub kind: &'static str,
    /// The request field at fault, when there is one.
    pub param: Option<Cow<'static, str>>,
    /// A machine-readable code, when there is one.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 about the request field `param`.
    pub fn invalid(param: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(Cow::Borrowed),
            code: None,
        }
    }

    /// A 400 with a machine-readable `code`.
    pub fn invalid_code(
        param: Option<&'static str>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code: Some(code),
            ..Self::invalid(param, message)
        }
    }

    /// A request refused with `status` (404, 405, 413, ...), of type `invalid_request_error`.
    pub fn refused(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            ..Self::invalid(None, message)
        }
    }

    /// A 400 for a request field this server does not implement: refused rather than ignored,
    /// so that a client relying on it learns at once.
    pub fn unsupported(field: &str) -> Self {
        Self {
            param: Some(Cow::Owned(field.to_string())),
            code: Some("unsupported_parameter"),
            ..Self::invalid(None, format!("{field} is not supported by this server"))
        }
    }

    /// A 404 for a `model` this server does not serve.
    pub fn model_not_found(model: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            param: Some(Cow::Borrowed("model")),
            code: Some("model_not_found"),
            ..Self::invalid(
                None,
                format!("the model {model:?} does not exist here: see GET /v1/models"),
            )
        }
    }

    /// A failure of the server itself (5xx).
    pub fn server(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: Some(code),
        }
    }

    /// The error object, as the body of a response or of a stream's last event.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

/// Seconds a client should wait before retrying a 503 (`Retry-After`).
const RETRY_AFTER_SECONDS: &str = "1";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}
