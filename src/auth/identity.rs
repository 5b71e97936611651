//! Who holds a session token: one indexed lookup of the token's hash (never bcrypt per
//! request), shared by REST (`Authorization: Bearer`, see `http::identity`) and the socket's
//! `auth` frame.
use crate::db::{self, users::UserRow, Db};
use crate::error::AppError;
use crate::ids::UserId;
use crate::time::now_ms;
use std::time::Duration;

/// Sliding expiry is written at most this often per session, so busy clients don't turn every
/// request into a write.
const TOUCH_EVERY_MS: i64 = 60_000;

#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserRow,
    pub token_hash: String,
}

impl Identity {
    pub fn user_id(&self) -> UserId {
        self.user.user_id()
    }
}

/// Resolves a raw token to its live session, sliding its expiry by `lifetime`.
pub async fn authenticate(db: &Db, lifetime: Duration, token: &str) -> Result<Identity, AppError> {
    if token.is_empty() || token.len() > 128 {
        return Err(AppError::unauthorized());
    }
    let token_hash = crate::auth::token::hash(token);
    let lifetime_ms = lifetime.as_millis() as i64;
    db.run(move |conn| {
        let now = now_ms();
        let (session, user) =
            db::sessions::find_live(conn, &token_hash, now)?.ok_or_else(AppError::unauthorized)?;
        if now - session.last_used_at >= TOUCH_EVERY_MS {
            db::sessions::touch(conn, &token_hash, now, now + lifetime_ms)?;
        }
        Ok(Identity { user, token_hash })
    })
    .await
}
