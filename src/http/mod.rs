//! The REST API: one file per resource, wired together here.
pub mod auth;
pub mod blocks;
pub mod calls;
pub mod friends;
pub mod health;
pub mod ice;
pub mod identity;
pub mod input;
pub mod me;
pub mod metrics;
pub mod openapi;
pub mod push;
pub mod security;
pub mod users;
pub mod web_client;

use crate::error::{AppError, ErrorCode};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{web, ResponseError};

/// The REST routes: probes and the web client at the root, the API under /api/v1. (The
/// socket edge wires its own `/ws`, see `ws::configure`.)
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(health::configure)
        .configure(web_client::configure)
        .service(
            web::scope("/api/v1")
                .configure(auth::configure)
                .configure(me::configure)
                .configure(users::configure)
                .configure(friends::configure)
                .configure(blocks::configure)
                .configure(calls::configure)
                .configure(ice::configure)
                .configure(push::configure)
                .configure(openapi::configure),
        );
}

/// Rewrites any error response that isn't already JSON (actix's own 405s, 404s and the like)
/// into the `{error, message}` shape, keeping its status; counts every error by its code.
pub fn jsonify_error<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        if let Some(err) = res
            .response()
            .error()
            .and_then(|e| e.as_error::<AppError>())
        {
            crate::metrics::get().rest_error(err.code);
        }
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    let message = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    crate::metrics::get().rest_error(code);
    let mut body: actix_web::HttpResponse<BoxBody> = AppError::new(code, message).error_response();
    *body.status_mut() = status;
    // Keep what the original said besides its body: a 405's `Allow` (RFC 9110 requires it).
    if let Some(allow) = res.headers().get(header::ALLOW) {
        body.headers_mut().insert(header::ALLOW, allow.clone());
    }
    let (req, _) = res.into_parts();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, body).map_into_right_body(),
    ))
}
