//! People: the rules for names and passwords that every edge applies (REST and the socket
//! alike), and the shapes in which users are shown, to themselves and to others.
use crate::auth::password::MAX_PASSWORD_BYTES;
use crate::db::users::UserRow;
use crate::error::{AppError, ErrorCode};
use crate::ids::UserId;
use serde::Serialize;

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
        8..=MAX_PASSWORD_BYTES => Ok(()),
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

/// A person as other users see them: in frames, search results, requests and block lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Serialize)]
pub struct DatedPerson {
    #[serde(flatten)]
    pub person: Person,
    #[serde(with = "crate::time::as_rfc3339")]
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
#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    #[serde(with = "crate::time::as_rfc3339")]
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
