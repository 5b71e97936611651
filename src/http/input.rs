//! What clients send, checked: usernames, passwords, display names, and JSON/query/path
//! extractor failures turned into typed JSON errors instead of actix's plain-text defaults.
use crate::error::{AppError, ErrorCode};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{web, HttpRequest};

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Lowercases and checks a username: 3-32 characters of [a-z0-9_.-].
pub fn username(raw: &str) -> Result<String, AppError> {
    let name = raw.trim().to_ascii_lowercase();
    let valid_len = (3..=32).contains(&name.len());
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if name == "requests" {
        // `/friends/requests` is a route, so no friend may be called that.
        Err(AppError::new(
            ErrorCode::InvalidUsername,
            "that username is reserved",
        ))
    } else if valid_len && valid_chars {
        Ok(name)
    } else {
        Err(AppError::new(
            ErrorCode::InvalidUsername,
            "usernames are 3-32 characters of a-z, 0-9, '_', '.' and '-'",
        ))
    }
}

/// Passwords are 8-72 bytes: bcrypt ignores everything past 72, so longer ones are refused
/// rather than silently truncated.
pub fn password(raw: &str) -> Result<(), AppError> {
    match raw.len() {
        0..=7 => Err(AppError::new(
            ErrorCode::InvalidPassword,
            "passwords need at least 8 bytes",
        )),
        8..=72 => Ok(()),
        _ => Err(AppError::new(
            ErrorCode::InvalidPassword,
            "passwords may be at most 72 bytes (bcrypt's limit)",
        )),
    }
}

/// Trims a display name and checks it is 1-64 characters without control characters.
pub fn display_name(raw: &str) -> Result<String, AppError> {
    let name = raw.trim();
    let len = name.chars().count();
    if (1..=64).contains(&len) && !name.chars().any(char::is_control) {
        Ok(name.to_owned())
    } else {
        Err(AppError::new(
            ErrorCode::InvalidDisplayName,
            "display names are 1-64 characters without control characters",
        ))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lowercased_and_checked() {
        assert_eq!(username("Ann_1.x-y").unwrap(), "ann_1.x-y");
        assert!(username("ab").is_err());
        assert!(username(&"a".repeat(33)).is_err());
        assert!(username("ann smith").is_err());
        assert!(username("änn").is_err());
        assert!(username("Requests").is_err());
    }

    #[test]
    fn passwords_are_8_to_72_bytes() {
        assert!(password("1234567").is_err());
        assert!(password("12345678").is_ok());
        assert!(password(&"x".repeat(72)).is_ok());
        assert!(password(&"x".repeat(73)).is_err());
    }
}
