//! Friendship, which is mutual: requests, acceptance, the friends list, unfriending.
use super::input::UserPath;
use crate::auth::Identity;
use crate::db::{self, users::UserRow, DbConn};
use crate::error::{AppError, ErrorBody, ErrorCode};
use crate::ids::UserId;
use crate::people::{self, DatedPerson, Person};
use crate::presence::hub::RelationChange;
use crate::state::AppState;
use crate::time::now_ms;
use crate::vocabulary::PresenceStatus;
use actix_web::{web, HttpResponse};
use diesel::Connection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/friends/requests")
            .route(web::post().to(send_request))
            .route(web::get().to(list_requests)),
    )
    .service(
        web::resource("/friends/requests/{username}/accept").route(web::post().to(accept_request)),
    )
    .service(web::resource("/friends/requests/{username}").route(web::delete().to(delete_request)))
    .service(web::resource("/friends").route(web::get().to(list_friends)))
    .service(web::resource("/friends/{username}").route(web::delete().to(remove_friend)));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    #[schema(schema_with = people::username_schema)]
    pub username: String,
}

#[derive(Serialize, ToSchema)]
pub struct RequestOutcome {
    /// "pending" when the request waits for the other side, "accepted" when it made friends.
    status: RequestStatus,
    user: Person,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Accepted,
}

#[derive(Serialize, ToSchema)]
pub struct RequestLists {
    incoming: Vec<DatedPerson>,
    outgoing: Vec<DatedPerson>,
}

/// A friend with live presence.
#[derive(Serialize, ToSchema)]
pub struct FriendView {
    pub username: String,
    pub display_name: String,
    pub presence: PresenceStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Absent for friends online now and for those never seen, as everywhere else.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "crate::time::as_rfc3339_opt"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct FriendList {
    friends: Vec<FriendView>,
}

/// The user named `name` as `viewer` may see them: unknown users and users who blocked the
/// viewer are both "not found", so a block is never revealed.
fn find_visible(conn: &mut DbConn, viewer: &UserId, name: &str) -> Result<UserRow, AppError> {
    db::users::find_named_if(conn, name, AppError::user_not_found, |conn, user| {
        Ok(!db::relations::has_blocked(conn, &user.id, viewer)?)
    })
}

/// Asks a user to be friends; if they had already asked, this accepts their request.
#[utoipa::path(
    post,
    path = "/friends/requests",
    tag = "friends",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Asked: `status` is `pending`.", body = RequestOutcome,
         links(("cancel" = (operation_id = "delete_request",
                            parameters(("username" = "$request.body#/username")))))),
        (status = 200, description = "They had asked: now friends, `status` is `accepted`.",
         body = RequestOutcome),
        (status = 400, body = ErrorBody, description = "`invalid_username`, `cannot_friend_self`"),
        (status = 404, body = ErrorBody,
         description = "`user_not_found` (also when they blocked the caller)"),
        (status = 409, body = ErrorBody,
         description = "`already_friends`, `request_exists`, `user_blocked`: the caller blocked them"),
    ),
)]
async fn send_request(
    state: web::Data<AppState>,
    me: Identity,
    body: web::Json<RequestBody>,
) -> Result<HttpResponse, AppError> {
    let name = people::username(&body.username)?;
    if name == me.user.username {
        return Err(AppError::new(
            ErrorCode::CannotFriendSelf,
            "you can't befriend yourself",
        ));
    }
    let my_id = me.user_id();
    let (target, accepted) = state
        .db
        .run(move |conn| {
            conn.transaction(|conn| {
                let target = find_visible(conn, &my_id, &name)?;
                let their_id = target.user_id();
                if db::relations::are_friends(conn, &my_id, &their_id)? {
                    return Err(AppError::new(
                        ErrorCode::AlreadyFriends,
                        "you are already friends",
                    ));
                }
                if db::relations::has_blocked(conn, &my_id, &their_id)? {
                    return Err(AppError::new(
                        ErrorCode::UserBlocked,
                        "you blocked this user; unblock them first",
                    ));
                }
                if db::relations::request_exists(conn, &their_id, &my_id)? {
                    db::relations::make_friends(conn, &my_id, &their_id, now_ms())?;
                    return Ok((target, true));
                }
                if db::relations::request_exists(conn, &my_id, &their_id)? {
                    return Err(AppError::new(
                        ErrorCode::RequestExists,
                        "you already asked this user",
                    ));
                }
                db::relations::insert_request(conn, &my_id, &their_id, now_ms())?;
                Ok((target, false))
            })
        })
        .await?;
    let (status, change, code) = if accepted {
        (
            RequestStatus::Accepted,
            RelationChange::Accepted,
            actix_web::http::StatusCode::OK,
        )
    } else {
        (
            RequestStatus::Pending,
            RelationChange::Requested,
            actix_web::http::StatusCode::CREATED,
        )
    };
    state.relation_changed(&me.user, &target, change).await;
    Ok(HttpResponse::build(code).json(RequestOutcome {
        status,
        user: Person::from(&target),
    }))
}

/// Friend requests to and from the caller.
#[utoipa::path(
    get,
    path = "/friends/requests",
    tag = "friends",
    security(("bearer" = [])),
    responses((status = 200, description = "Both lists.", body = RequestLists, links(
        ("accept" = (operation_id = "accept_request",
                     parameters(("username" = "$response.body#/incoming/0/username")))),
        ("decline" = (operation_id = "delete_request",
                      parameters(("username" = "$response.body#/incoming/0/username")))),
        ("cancel" = (operation_id = "delete_request",
                     parameters(("username" = "$response.body#/outgoing/0/username")))),
    ))),
)]
async fn list_requests(state: web::Data<AppState>, me: Identity) -> Result<HttpResponse, AppError> {
    let id = me.user_id();
    let (incoming, outgoing) = state
        .db
        .run(move |conn| {
            Ok((
                db::relations::incoming_requests(conn, &id)?,
                db::relations::outgoing_requests(conn, &id)?,
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(RequestLists {
        incoming: incoming.iter().map(DatedPerson::from).collect(),
        outgoing: outgoing.iter().map(DatedPerson::from).collect(),
    }))
}

/// Accepts a request from `username`: friends from now on.
#[utoipa::path(
    post,
    path = "/friends/requests/{username}/accept",
    tag = "friends",
    params(UserPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Friends; `status` is `accepted`.", body = RequestOutcome),
        (status = 400, body = ErrorBody, description = "`invalid_username`"),
        (status = 404, body = ErrorBody, description = "`request_not_found`"),
    ),
)]
async fn accept_request(
    state: web::Data<AppState>,
    me: Identity,
    path: web::Path<UserPath>,
) -> Result<HttpResponse, AppError> {
    let name = people::username(&path.into_inner().username)?;
    let my_id = me.user_id();
    let friend = state
        .db
        .run(move |conn| {
            conn.transaction(|conn| {
                let no_request =
                    || AppError::new(ErrorCode::RequestNotFound, "no request from that user");
                let from = db::users::find_named_if(conn, &name, no_request, |conn, from| {
                    db::relations::request_exists(conn, &from.id, &my_id)
                })?;
                db::relations::make_friends(conn, &my_id, &from.id, now_ms())?;
                Ok(from)
            })
        })
        .await?;
    state
        .relation_changed(&me.user, &friend, RelationChange::Accepted)
        .await;
    Ok(HttpResponse::Ok().json(RequestOutcome {
        status: RequestStatus::Accepted,
        user: Person::from(&friend),
    }))
}

/// Declines an incoming request or cancels an outgoing one.
#[utoipa::path(
    delete,
    path = "/friends/requests/{username}",
    tag = "friends",
    params(UserPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Declined or cancelled."),
        (status = 400, body = ErrorBody, description = "`invalid_username`"),
        (status = 404, body = ErrorBody, description = "`request_not_found`"),
    ),
)]
async fn delete_request(
    state: web::Data<AppState>,
    me: Identity,
    path: web::Path<UserPath>,
) -> Result<HttpResponse, AppError> {
    let name = people::username(&path.into_inner().username)?;
    let my_id = me.user_id();
    state
        .db
        .run(move |conn| {
            conn.transaction(|conn| {
                let no_request = || {
                    AppError::new(
                        ErrorCode::RequestNotFound,
                        "no request to or from that user",
                    )
                };
                db::users::find_named_if(conn, &name, no_request, |conn, other| {
                    let incoming = db::relations::delete_request(conn, &other.id, &my_id)?;
                    let outgoing = db::relations::delete_request(conn, &my_id, &other.id)?;
                    Ok(incoming || outgoing)
                })
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's friends with their live presence.
#[utoipa::path(
    get,
    path = "/friends",
    tag = "friends",
    security(("bearer" = [])),
    responses((status = 200, description = "Every friend.", body = FriendList, links(
        ("unfriend" = (operation_id = "remove_friend",
                       parameters(("username" = "$response.body#/friends/0/username")))),
    ))),
)]
async fn list_friends(state: web::Data<AppState>, me: Identity) -> Result<HttpResponse, AppError> {
    let id = me.user_id();
    let friends = state
        .db
        .run(move |conn| db::relations::friends_of(conn, &id))
        .await?;
    let online = state
        .presence_of(friends.iter().map(|f| f.user_id()).collect())
        .await;
    let views: Vec<FriendView> = friends
        .iter()
        .map(|f| {
            let presence = crate::presence::of(f, &online);
            FriendView {
                username: presence.username,
                display_name: f.display_name.clone(),
                presence: presence.status,
                status_message: presence.message,
                last_seen: presence.last_seen,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(FriendList { friends: views }))
}

/// Ends a friendship (and any call between the two).
#[utoipa::path(
    delete,
    path = "/friends/{username}",
    tag = "friends",
    params(UserPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "No longer friends."),
        (status = 400, body = ErrorBody, description = "`invalid_username`"),
        (status = 404, body = ErrorBody, description = "`friend_not_found`"),
    ),
)]
async fn remove_friend(
    state: web::Data<AppState>,
    me: Identity,
    path: web::Path<UserPath>,
) -> Result<HttpResponse, AppError> {
    let name = people::username(&path.into_inner().username)?;
    let my_id = me.user_id();
    let former = state
        .db
        .run(move |conn| {
            let not_friends = || {
                AppError::new(
                    ErrorCode::FriendNotFound,
                    "you are not friends with that user",
                )
            };
            db::users::find_named_if(conn, &name, not_friends, |conn, other| {
                db::relations::remove_friendship(conn, &my_id, &other.id)
            })
        })
        .await?;
    state
        .relation_changed(&me.user, &former, RelationChange::Removed)
        .await;
    Ok(HttpResponse::NoContent().finish())
}
