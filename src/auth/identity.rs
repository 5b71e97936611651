//! The authenticated caller of a request: `Authorization: Bearer <token>`, checked with one
//! indexed lookup of the token's hash (never bcrypt per request).
use crate::db::{self, users::UserRow};
use crate::error::AppError;
use crate::ids::UserId;
use crate::state::AppState;
use crate::time::now_ms;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

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

/// Resolves a raw token to its live session; used by REST and by the WebSocket `auth` frame.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Identity, AppError> {
    if token.is_empty() || token.len() > 128 {
        return Err(AppError::unauthorized());
    }
    let token_hash = crate::auth::token::hash(token);
    let lifetime_ms = state.config.session_lifetime.as_millis() as i64;
    state
        .db
        .run(move |conn| {
            let now = now_ms();
            let (session, user) = db::sessions::find_live(conn, &token_hash, now)?
                .ok_or_else(AppError::unauthorized)?;
            if now - session.last_used_at >= TOUCH_EVERY_MS {
                db::sessions::touch(conn, &token_hash, now, now + lifetime_ms)?;
            }
            Ok(Identity { user, token_hash })
        })
        .await
}

impl FromRequest for Identity {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::internal("app state missing"))?;
            let token = token.ok_or_else(AppError::unauthorized)?;
            authenticate(&state, &token).await
        })
    }
}
