//! Blocking: a blocked user can't befriend, find or call the blocker, and sees no presence.
use super::input;
use super::views::DatedPersonView;
use crate::auth::Identity;
use crate::db;
use crate::error::{AppError, ErrorCode};
use crate::state::{AppState, RelationChange};
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
    let name = input::username(&path.into_inner())?;
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
                let target = db::users::find_by_username(conn, &name)?
                    .ok_or_else(AppError::user_not_found)?;
                db::relations::block(conn, &my_id, &target.user_id(), now_ms())?;
                Ok::<_, AppError>(target)
            })
        })
        .await?;
    state.relation_changed(&me.user, &blocked, RelationChange::Blocked);
    Ok(HttpResponse::NoContent().finish())
}

async fn unblock(
    state: web::Data<AppState>,
    me: Identity,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let name = input::username(&path.into_inner())?;
    let my_id = me.user_id();
    state
        .db
        .run(move |conn| {
            let target = db::users::find_by_username(conn, &name)?;
            match target {
                Some(t) if db::relations::unblock(conn, &my_id, &t.user_id())? => Ok(()),
                _ => Err(AppError::new(
                    ErrorCode::BlockNotFound,
                    "you have not blocked that user",
                )),
            }
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
    let blocks: Vec<DatedPersonView> = rows.iter().map(DatedPersonView::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "blocks": blocks })))
}
