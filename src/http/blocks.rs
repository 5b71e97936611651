//! Blocking: a blocked user can't befriend, find or call the blocker, and sees no presence.
use super::input::UserPath;
use crate::auth::Identity;
use crate::db;
use crate::error::{AppError, ErrorBody, ErrorCode};
use crate::people::{self, DatedPerson};
use crate::presence::hub::RelationChange;
use crate::state::AppState;
use crate::time::now_ms;
use actix_web::{web, HttpResponse};
use diesel::Connection;
use serde::Serialize;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/blocks").route(web::get().to(list_blocks)))
        .service(
            web::resource("/blocks/{username}")
                .route(web::put().to(block))
                .route(web::delete().to(unblock)),
        );
}

#[derive(Serialize, ToSchema)]
pub struct BlockList {
    blocks: Vec<DatedPerson>,
}

/// Blocks a user: ends a friendship, requests and any call between the two. Blocking again
/// changes nothing.
#[utoipa::path(
    put,
    path = "/blocks/{username}",
    tag = "blocks",
    params(UserPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Blocked.",
         links(("unblock" = (operation_id = "unblock",
                             parameters(("username" = "$request.path.username")))))),
        (status = 400, body = ErrorBody, description = "`invalid_username`, `cannot_block_self`"),
        (status = 404, body = ErrorBody, description = "`user_not_found`"),
    ),
)]
async fn block(
    state: web::Data<AppState>,
    me: Identity,
    path: web::Path<UserPath>,
) -> Result<HttpResponse, AppError> {
    let name = people::username(&path.into_inner().username)?;
    if name == me.user.username {
        return Err(AppError::new(
            ErrorCode::CannotBlockSelf,
            "you can't block yourself",
        ));
    }
    let my_id = me.user_id();
    let blocked = state
        .db
        .run(move |conn| {
            conn.transaction(|conn| {
                db::users::find_named_if(conn, &name, AppError::user_not_found, |conn, target| {
                    db::relations::block(conn, &my_id, &target.id, now_ms())?;
                    Ok(true)
                })
            })
        })
        .await?;
    state
        .relation_changed(&me.user, &blocked, RelationChange::Blocked)
        .await;
    Ok(HttpResponse::NoContent().finish())
}

/// Unblocks a user.
#[utoipa::path(
    delete,
    path = "/blocks/{username}",
    tag = "blocks",
    params(UserPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Unblocked."),
        (status = 400, body = ErrorBody, description = "`invalid_username`"),
        (status = 404, body = ErrorBody, description = "`block_not_found`"),
    ),
)]
async fn unblock(
    state: web::Data<AppState>,
    me: Identity,
    path: web::Path<UserPath>,
) -> Result<HttpResponse, AppError> {
    let name = people::username(&path.into_inner().username)?;
    let my_id = me.user_id();
    state
        .db
        .run(move |conn| {
            let not_blocked =
                || AppError::new(ErrorCode::BlockNotFound, "you have not blocked that user");
            db::users::find_named_if(conn, &name, not_blocked, |conn, target| {
                db::relations::unblock(conn, &my_id, &target.id)
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The users the caller blocked.
#[utoipa::path(
    get,
    path = "/blocks",
    tag = "blocks",
    security(("bearer" = [])),
    responses((status = 200, description = "Every block.", body = BlockList, links(
        ("unblock" = (operation_id = "unblock",
                      parameters(("username" = "$response.body#/blocks/0/username")))),
    ))),
)]
async fn list_blocks(state: web::Data<AppState>, me: Identity) -> Result<HttpResponse, AppError> {
    let id = me.user_id();
    let rows = state
        .db
        .run(move |conn| db::relations::blocked_by(conn, &id))
        .await?;
    let blocks: Vec<DatedPerson> = rows.iter().map(DatedPerson::from).collect();
    Ok(HttpResponse::Ok().json(BlockList { blocks }))
}
