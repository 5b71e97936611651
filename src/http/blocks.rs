//! Blocking: a blocked user can't befriend, find or call the blocker, and sees no presence.
use crate::auth::Identity;
use crate::db;
use crate::error::{AppError, ErrorCode};
use crate::people::{self, DatedPerson};
use crate::presence::hub::RelationChange;
use crate::state::AppState;
use crate::time::now_ms;
use actix_web::{web, HttpResponse};
use diesel::Connection;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/blocks").route(web::get().to(list_blocks)))
        .service(
            web::resource("/blocks/{username}")
                .route(web::put().to(block))
                .route(web::delete().to(unblock)),
        );
}

async fn block(
    state: web::Data<AppState>,
    me: Identity,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let name = people::username(&path.into_inner())?;
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

async fn unblock(
    state: web::Data<AppState>,
    me: Identity,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let name = people::username(&path.into_inner())?;
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

async fn list_blocks(state: web::Data<AppState>, me: Identity) -> Result<HttpResponse, AppError> {
    let id = me.user_id();
    let rows = state
        .db
        .run(move |conn| db::relations::blocked_by(conn, &id))
        .await?;
    let blocks: Vec<DatedPerson> = rows.iter().map(DatedPerson::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "blocks": blocks })))
}
