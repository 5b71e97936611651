//! The signed-in user's own account: profile, password, deletion.
use crate::auth::Identity;
use crate::client_addr;
use crate::db;
use crate::error::{AppError, ErrorBody, ErrorCode};
use crate::people::{self, UserView};
use crate::presence::hub::RelationChange;
use crate::state::AppState;
use crate::time::now_ms;
use actix_web::{web, HttpRequest, HttpResponse};
use diesel::Connection;
use serde::Deserialize;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/me")
            .route(web::get().to(get_me))
            .route(web::patch().to(update_me))
            .route(web::delete().to(delete_me)),
    )
    .service(web::resource("/me/password").route(web::put().to(change_password)));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    #[schema(schema_with = people::display_name_schema)]
    pub display_name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    pub old_password: String,
    #[schema(schema_with = people::password_schema)]
    pub new_password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    /// The current password.
    pub password: String,
}

/// The signed-in user.
#[utoipa::path(
    get,
    path = "/me",
    tag = "me",
    security(("bearer" = [])),
    responses((status = 200, description = "The own profile.", body = UserView)),
)]
async fn get_me(me: Identity) -> HttpResponse {
    HttpResponse::Ok().json(UserView::from(&me.user))
}

/// Changes the display name.
#[utoipa::path(
    patch,
    path = "/me",
    tag = "me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated profile.", body = UserView),
        (status = 400, body = ErrorBody, description = "`invalid_display_name`"),
    ),
)]
async fn update_me(
    state: web::Data<AppState>,
    me: Identity,
    body: web::Json<UpdateBody>,
) -> Result<HttpResponse, AppError> {
    let name = people::display_name(&body.display_name)?;
    let mut user = me.user;
    let id = user.user_id();
    let stored = name.clone();
    state
        .db
        .run(move |conn| db::users::set_display_name(conn, &id, &stored))
        .await?;
    user.display_name = name;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

/// Checks the current password before anything sensitive changes, throttled like a login.
async fn confirm_password(
    state: &AppState,
    req: &HttpRequest,
    me: &Identity,
    password: String,
) -> Result<(), AppError> {
    let hash = Some(me.user.password_hash.clone());
    let client = client_addr::of(req, &state.config.trusted_proxies);
    let verified = state
        .login_limiter
        .verify(&state.hasher, &me.user.username, client, password, hash)
        .await?;
    if verified {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::WrongPassword,
            "the current password is wrong",
        ))
    }
}

/// Changes the password and revokes every other session of the user.
#[utoipa::path(
    put,
    path = "/me/password",
    tag = "me",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Changed; every other session is revoked."),
        (status = 400, body = ErrorBody, description = "`invalid_password`: the new one"),
        (status = 403, body = ErrorBody, description = "`wrong_password`: the old one"),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64)),
         description = "`rate_limited`: too many failed passwords for this username"),
        (status = 503, body = ErrorBody, headers(("Retry-After" = u64)),
         description = "`overloaded`: too many passwords are being hashed"),
    ),
)]
async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Identity,
    body: web::Json<PasswordBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    people::password(&body.new_password)?;
    confirm_password(&state, &req, &me, body.old_password).await?;
    let client = client_addr::of(&req, &state.config.trusted_proxies);
    let new_hash = state.hasher.hash(body.new_password, client).await?;
    let user = me.user_id();
    let keep = me.token_hash.clone();
    let revoked = {
        let user = user.clone();
        state
            .db
            .run(move |conn| {
                conn.transaction(|conn| {
                    db::users::set_password_hash(conn, &user, &new_hash)?;
                    db::sessions::delete_all_for_user(conn, &user, Some(&keep))
                })
            })
            .await?
    };
    state.sessions_revoked(&user, revoked);
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes the account: its sessions, friendships, requests and blocks go, its sockets close,
/// its live and ringing calls end at once (the other side gets `call.ended`), and what is left
/// of it is an anonymized row, so the other party's call history keeps those calls (shown as
/// with a deleted account).
#[utoipa::path(
    delete,
    path = "/me",
    tag = "me",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 403, body = ErrorBody, description = "`wrong_password`"),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64)),
         description = "`rate_limited`: too many failed passwords for this username"),
        (status = 503, body = ErrorBody, headers(("Retry-After" = u64)),
         description = "`overloaded`: too many passwords are being hashed"),
    ),
)]
async fn delete_me(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Identity,
    body: web::Json<DeleteBody>,
) -> Result<HttpResponse, AppError> {
    confirm_password(&state, &req, &me, body.into_inner().password).await?;
    let user = me.user_id();
    let (revoked, friends) = {
        let user = user.clone();
        state
            .db
            .run(move |conn| {
                conn.transaction(|conn| {
                    let friends = db::relations::friends_of(conn, &user)?;
                    let revoked = db::sessions::delete_all_for_user(conn, &user, None)?;
                    db::relations::delete_all_of(conn, &user)?;
                    db::users::anonymize(conn, &user, now_ms())?;
                    Ok::<_, AppError>((revoked, friends))
                })
            })
            .await?
    };
    state.sessions_revoked(&user, revoked);
    for friend in friends {
        state
            .relation_changed(&me.user, &friend, RelationChange::Removed)
            .await;
    }
    Ok(HttpResponse::NoContent().finish())
}
