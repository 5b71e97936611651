//! Calls over REST: history, one call, starting and ending a call through the router.
use super::input::{self, CallPath};
use crate::auth::Identity;
use crate::calls::router::{ActOnCall, CallAction, PlaceCall};
use crate::db::{self, calls::CallRow};
use crate::error::{AppError, ErrorBody, ErrorCode};
use crate::ids::{CallId, UserId};
use crate::people::{self, Party};
use crate::state::AppState;
use crate::time::now_ms;
use crate::vocabulary::{Direction, HistoryOutcome, Media, RecordedPhase};
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/calls")
            .route(web::get().to(history))
            .route(web::post().to(start_call)),
    )
    .service(web::resource("/calls/seen").route(web::post().to(mark_seen)))
    .service(web::resource("/calls/{id}").route(web::get().to(get_call)))
    .service(web::resource("/calls/{id}/end").route(web::post().to(end_call)));
}

#[derive(Serialize, ToSchema)]
pub struct CallView {
    id: CallId,
    /// The other party's username; empty when their account was deleted.
    peer: String,
    /// The other party deleted their account (the call stays in this history).
    peer_deleted: bool,
    direction: Direction,
    media: Media,
    /// The outcome once ended; "ringing" or "active" before.
    outcome: HistoryOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_reason: Option<String>,
    missed: bool,
    #[serde(with = "crate::time::as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    started_at: i64,
    /// Null until answered, and for calls never answered.
    #[serde(with = "crate::time::as_rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    answered_at: Option<i64>,
    /// Null until the call ends.
    #[serde(with = "crate::time::as_rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    ended_at: Option<i64>,
    /// Seconds from answer to end; 0 for calls never answered.
    duration_seconds: i64,
}

fn view(row: CallRow, me: &UserId, names: &HashMap<UserId, Option<String>>) -> CallView {
    let outgoing = row.caller_id == *me;
    let peer_id = if outgoing {
        &row.callee_id
    } else {
        &row.caller_id
    };
    let outcome = match (row.outcome, row.answered_at) {
        (Some(reason), _) => HistoryOutcome::Ended(reason),
        (None, Some(_)) => HistoryOutcome::Live(RecordedPhase::Active),
        (None, None) => HistoryOutcome::Live(RecordedPhase::Ringing),
    };
    let missed =
        !outgoing && row.answered_at.is_none() && row.outcome.is_some_and(|r| r.is_missed());
    let duration_seconds = match (row.answered_at, row.ended_at) {
        (Some(a), Some(e)) => (e - a).max(0) / 1000,
        _ => 0,
    };
    CallView {
        id: row.id,
        peer: names.get(peer_id).cloned().flatten().unwrap_or_default(),
        peer_deleted: names.get(peer_id).is_some_and(Option::is_none),
        direction: if outgoing {
            Direction::Outgoing
        } else {
            Direction::Incoming
        },
        media: row.media,
        outcome,
        end_reason: row.end_reason,
        missed,
        started_at: row.created_at,
        answered_at: row.answered_at,
        ended_at: row.ended_at,
        duration_seconds,
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    #[param(schema_with = input::limit_schema)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of the history, newest first.
#[derive(Serialize, ToSchema)]
pub struct CallHistory {
    calls: Vec<CallView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
    /// Calls missed since `POST /calls/seen`.
    missed_count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CallStarted {
    call_id: CallId,
    /// The callee was already calling the caller: their call was accepted instead.
    merged: bool,
}

fn invalid_cursor() -> AppError {
    AppError::new(
        ErrorCode::InvalidCursor,
        "cursor is not one this server handed out",
    )
}

/// Cursors are "<created_at ms>.<call id>" of the last call on the previous page.
pub fn parse_cursor(raw: &str) -> Result<(i64, CallId), AppError> {
    let bad = invalid_cursor;
    let (at, id) = raw.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if !could_be_call_id(id) {
        return Err(bad());
    }
    Ok((at, CallId::from(id)))
}

/// Call ids are short runs of letters and digits; anything else names no call, and is never
/// sent to the database (Postgres refuses text with a NUL byte).
fn could_be_call_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The caller's calls, newest first, one page at a time.
#[utoipa::path(
    get,
    path = "/calls",
    tag = "calls",
    params(HistoryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of calls.", body = CallHistory, links(
            ("call" = (operation_id = "get_call",
                       parameters(("id" = "$response.body#/calls/0/id")))),
            ("end" = (operation_id = "end_call",
                      parameters(("id" = "$response.body#/calls/0/id")))),
        )),
        (status = 400, body = ErrorBody,
         description = "`invalid_request`: `limit` out of range; `invalid_cursor`"),
    ),
)]
async fn history(
    state: web::Data<AppState>,
    me: Identity,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let limit = input::limit(query.limit)?;
    let before = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let user = me.user_id();
    let seen = me.user.calls_seen_at;
    let (rows, names, missed_count) = {
        let user = user.clone();
        state
            .db
            .run(move |conn| {
                // A well-formed cursor must still name a call of this user's, as handed out.
                if let Some((at, id)) = &before {
                    let issued = db::calls::find(conn, id)?.is_some_and(|call| {
                        call.created_at == *at && (call.caller_id == user || call.callee_id == user)
                    });
                    if !issued {
                        return Err(invalid_cursor());
                    }
                }
                let rows = db::calls::history(conn, &user, before, limit)?;
                let ids: Vec<&UserId> = rows
                    .iter()
                    .flat_map(|r| [&r.caller_id, &r.callee_id])
                    .collect();
                let names = db::calls::usernames(conn, &ids)?;
                Ok((rows, names, db::calls::missed_since(conn, &user, seen)?))
            })
            .await?
    };
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| format!("{}.{}", r.created_at, r.id)))
        .flatten();
    let calls: Vec<CallView> = rows.into_iter().map(|r| view(r, &user, &names)).collect();
    Ok(HttpResponse::Ok().json(CallHistory {
        calls,
        next_cursor,
        missed_count,
    }))
}

/// One call of the caller's.
#[utoipa::path(
    get,
    path = "/calls/{id}",
    tag = "calls",
    params(CallPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The call.", body = CallView),
        (status = 404, body = ErrorBody,
         description = "`call_not_found` (also for calls of other users)"),
    ),
)]
async fn get_call(
    state: web::Data<AppState>,
    me: Identity,
    path: web::Path<CallPath>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner().id;
    if !could_be_call_id(&id) {
        return Err(AppError::new(ErrorCode::CallNotFound, "no such call"));
    }
    let id = CallId::from(id);
    let user = me.user_id();
    let found = {
        let user = user.clone();
        state
            .db
            .run(move |conn| {
                let row = db::calls::find(conn, &id)?;
                // Only participants may see a call; others get the same 404 as a missing one.
                let row = row.filter(|r| r.caller_id == user || r.callee_id == user);
                let Some(row) = row else { return Ok(None) };
                let names = db::calls::usernames(conn, &[&row.caller_id, &row.callee_id])?;
                Ok(Some((row, names)))
            })
            .await?
    };
    let (row, names) =
        found.ok_or_else(|| AppError::new(ErrorCode::CallNotFound, "no such call"))?;
    Ok(HttpResponse::Ok().json(view(row, &user, &names)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The friend to call.
    #[schema(schema_with = people::username_schema)]
    pub to: String,
    pub media: Media,
}

/// Starts a call for a caller with a connected device; the call then runs over that device.
#[utoipa::path(
    post,
    path = "/calls",
    tag = "calls",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Ringing (or, `merged`, accepted).", body = CallStarted,
         links(
            ("call" = (operation_id = "get_call", parameters(("id" = "$response.body#/call_id")))),
            ("end" = (operation_id = "end_call", parameters(("id" = "$response.body#/call_id")))),
        )),
        (status = 400, body = ErrorBody, description = "`invalid_username`, `cannot_call_self`"),
        (status = 403, body = ErrorBody,
         description = "`not_friends` (also for unknown users and those who blocked the caller)"),
        (status = 409, body = ErrorBody,
         description = "`not_connected`: no socket of the caller's; `already_in_call`"),
    ),
)]
async fn start_call(
    state: web::Data<AppState>,
    me: Identity,
    body: web::Json<StartBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let to = people::username(&body.to)?;
    if to == me.user.username {
        return Err(AppError::new(
            ErrorCode::CannotCallSelf,
            "you can't call yourself",
        ));
    }
    let callee = state.callable_friend(&me.user_id(), to).await?;
    let caller = Party::from(&me.user);
    let placed = state
        .router
        .send(PlaceCall {
            caller,
            device: None,
            callee,
            media: body.media,
        })
        .await
        .map_err(AppError::internal)??;
    Ok(HttpResponse::Created().json(CallStarted {
        call_id: placed.call_id,
        merged: placed.merged,
    }))
}

/// Cancels, rejects or hangs up, whichever fits the call's state.
#[utoipa::path(
    post,
    path = "/calls/{id}/end",
    tag = "calls",
    params(CallPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Ended."),
        (status = 403, body = ErrorBody, description = "`forbidden`"),
        (status = 404, body = ErrorBody, description = "`call_not_found`: not a live call of the caller's"),
        (status = 409, body = ErrorBody, description = "`invalid_transition`, `not_connected`"),
    ),
)]
async fn end_call(
    state: web::Data<AppState>,
    me: Identity,
    path: web::Path<CallPath>,
) -> Result<HttpResponse, AppError> {
    let msg = ActOnCall {
        user: me.user_id(),
        device: None,
        call_id: CallId::from(path.into_inner().id),
        action: CallAction::End,
    };
    state.router.send(msg).await.map_err(AppError::internal)??;
    Ok(HttpResponse::NoContent().finish())
}

/// Marks every call so far as seen: the missed-call count starts again from zero.
#[utoipa::path(
    post,
    path = "/calls/seen",
    tag = "calls",
    security(("bearer" = [])),
    responses((status = 204, description = "Seen.")),
)]
async fn mark_seen(state: web::Data<AppState>, me: Identity) -> Result<HttpResponse, AppError> {
    let user = me.user_id();
    state
        .db
        .run(move |conn| db::users::set_calls_seen_at(conn, &user, now_ms()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
