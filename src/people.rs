//! People: the rules for names and passwords that every edge applies (REST and the socket
//! alike), and the shapes in which users are shown, to themselves and to others.
use crate::auth::password::MAX_PASSWORD_BYTES;
use crate::db::users::UserRow;
use crate::error::{AppError, ErrorCode};
use crate::ids::UserId;
use serde::Serialize;
use utoipa::openapi::schema::{SchemaType, Type};
use utoipa::openapi::{Object, ObjectBuilder};
use utoipa::ToSchema;

/// Usernames are this many characters of [a-z0-9_.-] (uppercase is accepted and lowercased).
pub const USERNAME_LEN: (usize, usize) = (3, 32);
/// Passwords are at least this many bytes (and at most `MAX_PASSWORD_BYTES`).
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Display names are at most this many characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// Lowercases and checks a username: 3-32 characters of [a-z0-9_.-].
pub fn username(raw: &str) -> Result<String, AppError> {
    let name = raw.trim().to_ascii_lowercase();
    let valid_len = (USERNAME_LEN.0..=USERNAME_LEN.1).contains(&name.len());
    let valid_chars = all_username_chars(&name);
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

/// Whether every character of `text` (lowercased) may be in a username, so a search prefix
/// that fails this matches nobody. (Postgres refuses text with a NUL byte, so such input must
/// not reach a query.)
pub fn all_username_chars(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
}

/// Passwords are 8-72 bytes: bcrypt ignores everything past 72, so longer ones are refused
/// rather than silently truncated.
pub fn password(raw: &str) -> Result<(), AppError> {
    match raw.len() {
        n if n < MIN_PASSWORD_BYTES => Err(AppError::new(
            ErrorCode::InvalidPassword,
            "passwords need at least 8 bytes",
        )),
        MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES => Ok(()),
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
    if (1..=MAX_DISPLAY_NAME_CHARS).contains(&len) && !name.chars().any(char::is_control) {
        Ok(name.to_owned())
    } else {
        Err(AppError::new(
            ErrorCode::InvalidDisplayName,
            "display names are 1-64 characters without control characters",
        ))
    }
}

/// The rules above as JSON Schema, for the OpenAPI description (`http::openapi`): written
/// from the same constants, so the description neither refuses what the checks accept nor
/// the other way round. Surrounding whitespace is trimmed before a check, so the patterns
/// allow it (`\s` is Unicode's White_Space, as `str::trim` is).
pub fn username_schema() -> Object {
    let (min, max) = USERNAME_LEN;
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^\\s*[A-Za-z0-9_.-]{{{min},{max}}}\\s*$")))
        .description(Some(format!(
            "{min}-{max} characters of a-z, 0-9, '_', '.' and '-'; uppercase is lowercased, \
             surrounding spaces are trimmed. `requests` is reserved."
        )))
        .build()
}

/// JSON Schema counts characters where the rule counts bytes: a character is 1 to 4 bytes of
/// UTF-8, so these bounds are the widest the byte rule allows, and the description says it.
pub fn password_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(MIN_PASSWORD_BYTES.div_ceil(4)))
        .max_length(Some(MAX_PASSWORD_BYTES))
        .description(Some(format!(
            "{MIN_PASSWORD_BYTES}-{MAX_PASSWORD_BYTES} bytes of UTF-8 (bcrypt reads no more)."
        )))
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Password,
        )))
        .build()
}

pub fn display_name_schema() -> Object {
    display_name_schema_of(Type::String.into())
}

/// A display name that may be left out or null, as at registration.
pub fn optional_display_name_schema() -> Object {
    display_name_schema_of(SchemaType::from_iter([Type::String, Type::Null]))
}

fn display_name_schema_of(schema_type: SchemaType) -> Object {
    let max = MAX_DISPLAY_NAME_CHARS;
    ObjectBuilder::new()
        .schema_type(schema_type)
        .min_length(Some(1))
        .pattern(Some(format!(
            "^\\s*[^\\u0000-\\u001f\\u007f-\\u009f]{{1,{max}}}\\s*$"
        )))
        .description(Some(format!(
            "1-{MAX_DISPLAY_NAME_CHARS} characters, no control characters; surrounding \
             whitespace is trimmed."
        )))
        .build()
}

/// A person as other users see them: in frames, search results, requests and block lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Person {
    pub username: String,
    pub display_name: String,
}

impl From<&UserRow> for Person {
    fn from(u: &UserRow) -> Self {
        Self {
            username: u.username.clone(),
            display_name: u.display_name.clone(),
        }
    }
}

/// A user by id, with how others see them: a call's party, a signed-in socket's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub user: UserId,
    pub username: String,
    pub display_name: String,
}

impl Party {
    pub fn person(&self) -> Person {
        Person {
            username: self.username.clone(),
            display_name: self.display_name.clone(),
        }
    }
}

impl From<&UserRow> for Party {
    fn from(u: &UserRow) -> Self {
        Self {
            user: u.id.clone(),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
        }
    }
}

/// A person with the instant a request or block was made.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatedPerson {
    #[serde(flatten)]
    pub person: Person,
    #[serde(with = "crate::time::as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

impl From<&(UserRow, i64)> for DatedPerson {
    fn from((u, at): &(UserRow, i64)) -> Self {
        Self {
            person: Person::from(u),
            created_at: *at,
        }
    }
}

/// A user as they see themselves (`GET /me`, sign-in answers, `welcome`).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    #[serde(with = "crate::time::as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

impl From<&UserRow> for UserView {
    fn from(u: &UserRow) -> Self {
        Self {
            id: u.id.clone(),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            created_at: u.created_at,
        }
    }
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
