//! Accounts' way in and out: register, login, logout, logout everywhere.
use crate::auth::{token, Identity};
use crate::client_addr;
use crate::db::{self, sessions::SessionRow, users::UserRow};
use crate::error::{AppError, ErrorBody, ErrorCode};
use crate::ids::UserId;
use crate::people::{self, UserView};
use crate::state::AppState;
use crate::time::now_ms;
use actix_web::{web, HttpRequest, HttpResponse};
use diesel::Connection;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/auth/register").route(web::post().to(register)))
        .service(web::resource("/auth/login").route(web::post().to(login)))
        .service(web::resource("/auth/logout").route(web::post().to(logout)))
        .service(web::resource("/auth/logout-all").route(web::post().to(logout_all)));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    #[schema(schema_with = people::username_schema)]
    pub username: String,
    #[schema(schema_with = people::password_schema)]
    pub password: String,
    /// The username when absent or null.
    #[schema(schema_with = people::optional_display_name_schema, required = false)]
    pub display_name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// Any case; surrounding spaces are trimmed.
    pub username: String,
    pub password: String,
}

/// What a client receives after registering or logging in; the token is shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    user: UserView,
    /// Send as `Authorization: Bearer <token>` and in the socket's `auth` frame.
    token: String,
    /// Sliding: each use of the token moves it forward.
    #[serde(with = "crate::time::as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: i64,
}

/// A new session row for `user` and the token that opens it (shown to the client once).
pub fn new_session(state: &AppState, user: &UserId, req: &HttpRequest) -> (String, SessionRow) {
    let (token, token_hash) = token::generate();
    let now = now_ms();
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
    let session = SessionRow {
        token_hash,
        user_id: user.clone(),
        created_at: now,
        last_used_at: now,
        expires_at: now + state.config.session_lifetime.as_millis() as i64,
        user_agent,
    };
    (token, session)
}

/// Creates an account and signs it in.
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    responses(
        (status = 201, description = "Registered and signed in.", body = SessionView),
        (status = 400, body = ErrorBody,
         description = "`invalid_username`, `invalid_password`, `invalid_display_name`"),
        (status = 409, body = ErrorBody, description = "`username_taken`"),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64)),
         description = "`rate_limited`: past `--registrations-per-hour` from this address"),
        (status = 503, body = ErrorBody, headers(("Retry-After" = u64)),
         description = "`overloaded`: too many passwords are being hashed"),
    ),
)]
async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let username = people::username(&body.username)?;
    people::password(&body.password)?;
    admit_registration(&state, &req)?;
    let display_name = match &body.display_name {
        Some(name) => people::display_name(name)?,
        None => username.clone(),
    };
    let client = client_addr::of(&req, &state.config.trusted_proxies);
    let password_hash = state.hasher.hash(body.password, client).await?;
    let user = UserRow {
        id: UserId::new(),
        username,
        display_name,
        password_hash,
        created_at: now_ms(),
        last_seen: None,
        calls_seen_at: 0,
    };
    let (token, session) = new_session(&state, &user.user_id(), &req);
    let expires_at = session.expires_at;
    let user = state
        .db
        .run(move |conn| {
            conn.transaction(|conn| {
                db::users::insert(conn, &user)?;
                db::sessions::insert(conn, &session)?;
                Ok::<_, AppError>(user)
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(SessionView {
        user: UserView::from(&user),
        token,
        expires_at,
    }))
}

/// `--registrations-per-hour` per client address: 429 `rate_limited` past it.
fn admit_registration(state: &AppState, req: &HttpRequest) -> Result<(), AppError> {
    let Some(limit) = &state.registrations else {
        return Ok(());
    };
    let Some(client) = client_addr::of(req, &state.config.trusted_proxies) else {
        return Ok(());
    };
    let admitted = limit
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take(client, Instant::now());
    admitted.map_err(|wait| {
        let wait = wait.as_secs().max(1);
        let mut err = AppError::new(
            ErrorCode::RateLimited,
            format!("too many registrations from this address; retry in {wait} s"),
        );
        err.retry_after = Some(wait);
        err
    })
}

/// Signs in: a new session and its token.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    responses(
        (status = 200, description = "Signed in.", body = SessionView),
        (status = 401, body = ErrorBody, description = "`invalid_credentials`"),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64)),
         description = "`rate_limited`: too many failed passwords for this username"),
        (status = 503, body = ErrorBody, headers(("Retry-After" = u64)),
         description = "`overloaded`: too many passwords are being hashed"),
    ),
)]
async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let username = body.username.trim().to_ascii_lowercase();
    // A name that could never be registered names nobody: no query (Postgres refuses a NUL).
    let user = match people::username(&username) {
        Ok(lookup) => {
            state
                .db
                .run(move |conn| db::users::find_by_username(conn, &lookup))
                .await?
        }
        Err(_) => None,
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let verified = state
        .login_limiter
        .verify(
            &state.hasher,
            &username,
            client_addr::of(&req, &state.config.trusted_proxies),
            body.password,
            hash,
        )
        .await;
    crate::metrics::get().login(&verified);
    if !verified? {
        return Err(AppError::new(
            ErrorCode::InvalidCredentials,
            "wrong username or password",
        ));
    }
    let user = user.ok_or_else(|| AppError::internal("verified a missing user"))?;
    let (token, session) = new_session(&state, &user.user_id(), &req);
    let expires_at = session.expires_at;
    state
        .db
        .run(move |conn| db::sessions::insert(conn, &session))
        .await?;
    Ok(HttpResponse::Ok().json(SessionView {
        user: UserView::from(&user),
        token,
        expires_at,
    }))
}

/// Ends this session; its sockets close (4001).
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 204, description = "Signed out.")),
)]
async fn logout(state: web::Data<AppState>, me: Identity) -> Result<HttpResponse, AppError> {
    let hash = me.token_hash.clone();
    state
        .db
        .run(move |conn| db::sessions::delete(conn, &hash))
        .await?;
    state.sessions_revoked(&me.user_id(), vec![me.token_hash]);
    Ok(HttpResponse::NoContent().finish())
}

/// Ends every session of the user, this one included; their sockets close (4001).
#[utoipa::path(
    post,
    path = "/auth/logout-all",
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 204, description = "Signed out everywhere.")),
)]
async fn logout_all(state: web::Data<AppState>, me: Identity) -> Result<HttpResponse, AppError> {
    let user = me.user_id();
    let revoked = {
        let user = user.clone();
        state
            .db
            .run(move |conn| db::sessions::delete_all_for_user(conn, &user, None))
            .await?
    };
    state.sessions_revoked(&user, revoked);
    Ok(HttpResponse::NoContent().finish())
}
