//! The JSON shapes REST responses use for users and relations.
use crate::db::users::UserRow;
use serde::Serialize;

/// A user as they see themselves.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: String,
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

/// Another user, as shown in search results, requests and block lists.
#[derive(Debug, Serialize)]
pub struct PersonView {
    pub username: String,
    pub display_name: String,
}

impl From<&UserRow> for PersonView {
    fn from(u: &UserRow) -> Self {
        Self {
            username: u.username.clone(),
            display_name: u.display_name.clone(),
        }
    }
}

/// A person with the instant a request or block was made.
#[derive(Debug, Serialize)]
pub struct DatedPersonView {
    pub username: String,
    pub display_name: String,
    #[serde(with = "crate::time::as_rfc3339")]
    pub created_at: i64,
}

impl From<&(UserRow, i64)> for DatedPersonView {
    fn from((u, at): &(UserRow, i64)) -> Self {
        Self {
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            created_at: *at,
        }
    }
}

/// What a client receives after registering or logging in; the token is shown only here.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub user: UserView,
    pub token: String,
    #[serde(with = "crate::time::as_rfc3339")]
    pub expires_at: i64,
}
