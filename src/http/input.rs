//! What REST clients send, checked: page sizes, the names in paths, and JSON/query/path
//! extractor failures turned into typed JSON errors instead of actix's plain-text defaults.
//! Names and passwords are checked by [`crate::people`], which the socket edge uses too.
use crate::error::{AppError, ErrorCode};
use crate::people;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde::Deserialize;
use std::time::Duration;
use utoipa::openapi::{schema::Type, Object, ObjectBuilder};
use utoipa::IntoParams;

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A body declared over [`MAX_BODY_BYTES`] but at most this long is read and thrown away
/// before its 413 is sent, within [`DRAIN_TIME`]. Closing on a client (or a proxy) that is
/// still sending would reset the connection, and the client would lose the answer: Caddy
/// reports a 502 instead. Longer bodies get their 413 at once and the connection is closed.
pub const DRAIN_BYTES: u64 = 1024 * 1024;
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Page sizes: `limit` is 1 to this, and this when absent.
pub const MAX_LIMIT: i64 = 100;
pub const DEFAULT_LIMIT: i64 = 20;

/// A page size: default 20, at most 100.
pub fn limit(raw: Option<i64>) -> Result<i64, AppError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=MAX_LIMIT) => Ok(n),
        Some(_) => Err(AppError::new(
            ErrorCode::InvalidRequest,
            format!("limit must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// [`limit`]'s rule as JSON Schema, for the OpenAPI description.
pub fn limit_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT))
        .default(Some(DEFAULT_LIMIT.into()))
        .description(Some("Page size."))
        .build()
}

/// A route naming another user: `/friends/{username}`, `/blocks/{username}`, ...
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    #[param(schema_with = people::username_schema)]
    pub username: String,
}

/// A route naming a call: `/calls/{id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CallPath {
    /// The call's id, as `POST /calls`, `call.incoming` or the history gave it.
    pub id: String,
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

/// Middleware: a request whose `Content-Length` is over [`MAX_BODY_BYTES`] is answered 413
/// `payload_too_large` without reaching its handler, once its body has been drained (see
/// [`DRAIN_BYTES`]). Chunked bodies are cut by the JSON extractor ([`json_config`]).
pub async fn refuse_oversized(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let Some(length) = declared.filter(|&length| length > MAX_BODY_BYTES as u64) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let drained = length <= DRAIN_BYTES && {
        let mut body = req.take_payload();
        // The decoder stops at the declared length; the deadline stops a client that stalls.
        tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(_)) = body.next().await {}
        })
        .await
        .is_ok()
    };
    let mut res = req.error_response(too_large());
    if !drained {
        // What is left of the body cannot be told from a next request: the connection ends.
        res.response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(res.map_into_right_body())
}

fn too_large() -> AppError {
    AppError::new(
        ErrorCode::PayloadTooLarge,
        format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
    )
}

fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let app = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            too_large()
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
