//! What REST clients send, checked: page sizes, and JSON/query/path extractor failures turned
//! into typed JSON errors instead of actix's plain-text defaults. Names and passwords are
//! checked by [`crate::people`], which the socket edge uses too.
use crate::error::{AppError, ErrorCode};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{web, HttpRequest};

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A page size: default 20, at most 100.
pub fn limit(raw: Option<i64>) -> Result<i64, AppError> {
    match raw {
        None => Ok(20),
        Some(n @ 1..=100) => Ok(n),
        Some(_) => Err(AppError::new(
            ErrorCode::InvalidRequest,
            "limit must be between 1 and 100",
        )),
    }
}

pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .error_handler(json_error)
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _: &HttpRequest| {
        AppError::new(
            ErrorCode::InvalidRequest,
            format!("bad query string: {err}"),
        )
        .into()
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _: &HttpRequest| {
        AppError::new(ErrorCode::InvalidRequest, format!("bad path: {err}")).into()
    })
}

fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let app = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            AppError::new(
                ErrorCode::PayloadTooLarge,
                format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
            )
        }
        JsonPayloadError::ContentType => AppError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => AppError::new(
            ErrorCode::InvalidRequest,
            format!("invalid request body: {e}"),
        ),
        JsonPayloadError::Deserialize(e) => {
            AppError::new(ErrorCode::InvalidJson, format!("malformed JSON: {e}"))
        }
        other => AppError::new(
            ErrorCode::InvalidRequest,
            format!("could not read the body: {other}"),
        ),
    };
    app.into()
}
