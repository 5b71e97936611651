//! Queries on the relations between two users: friend requests, friendships and blocks.
use super::schema::{blocks, friend_requests, friendships, users};
use super::users::UserRow;
use super::DbConn;
use crate::error::AppError;
use crate::ids::UserId;
use diesel::prelude::*;

pub fn are_friends(conn: &mut DbConn, a: &UserId, b: &UserId) -> Result<bool, AppError> {
    let found = friendships::table
        .find((a.as_str(), b.as_str()))
        .select(friendships::created_at)
        .first::<i64>(conn)
        .optional()?;
    Ok(found.is_some())
}

/// Whether `blocker` has blocked `blocked`.
pub fn has_blocked(
    conn: &mut DbConn,
    blocker: &UserId,
    blocked: &UserId,
) -> Result<bool, AppError> {
    let found = blocks::table
        .find((blocker.as_str(), blocked.as_str()))
        .select(blocks::created_at)
        .first::<i64>(conn)
        .optional()?;
    Ok(found.is_some())
}

pub fn request_exists(conn: &mut DbConn, from: &UserId, to: &UserId) -> Result<bool, AppError> {
    let found = friend_requests::table
        .find((from.as_str(), to.as_str()))
        .select(friend_requests::created_at)
        .first::<i64>(conn)
        .optional()?;
    Ok(found.is_some())
}

pub fn insert_request(
    conn: &mut DbConn,
    from: &UserId,
    to: &UserId,
    now: i64,
) -> Result<(), AppError> {
    diesel::insert_into(friend_requests::table)
        .values((
            friend_requests::from_id.eq(from.as_str()),
            friend_requests::to_id.eq(to.as_str()),
            friend_requests::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Deletes the request from `from` to `to`; returns whether there was one.
pub fn delete_request(conn: &mut DbConn, from: &UserId, to: &UserId) -> Result<bool, AppError> {
    let n =
        diesel::delete(friend_requests::table.find((from.as_str(), to.as_str()))).execute(conn)?;
    Ok(n > 0)
}

/// Makes `a` and `b` friends and clears requests both ways (call inside a transaction).
pub fn make_friends(conn: &mut DbConn, a: &UserId, b: &UserId, now: i64) -> Result<(), AppError> {
    delete_request(conn, a, b)?;
    delete_request(conn, b, a)?;
    // Two single-row inserts: multi-row inserts aren't portable across the two backends.
    for (user, friend) in [(a, b), (b, a)] {
        diesel::insert_into(friendships::table)
            .values((
                friendships::user_id.eq(user.as_str()),
                friendships::friend_id.eq(friend.as_str()),
                friendships::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Ends the friendship both ways; returns whether there was one.
pub fn remove_friendship(conn: &mut DbConn, a: &UserId, b: &UserId) -> Result<bool, AppError> {
    let n = diesel::delete(
        friendships::table.filter(
            friendships::user_id
                .eq(a.as_str())
                .and(friendships::friend_id.eq(b.as_str()))
                .or(friendships::user_id
                    .eq(b.as_str())
                    .and(friendships::friend_id.eq(a.as_str()))),
        ),
    )
    .execute(conn)?;
    Ok(n > 0)
}

pub fn friends_of(conn: &mut DbConn, user: &UserId) -> Result<Vec<UserRow>, AppError> {
    Ok(friendships::table
        .inner_join(users::table.on(users::id.eq(friendships::friend_id)))
        .filter(friendships::user_id.eq(user.as_str()))
        .select(UserRow::as_select())
        .order(users::username.asc())
        .load(conn)?)
}

/// Ids of `user`'s friends (for presence fan-out).
pub fn friend_ids(conn: &mut DbConn, user: &UserId) -> Result<Vec<UserId>, AppError> {
    let ids: Vec<String> = friendships::table
        .filter(friendships::user_id.eq(user.as_str()))
        .select(friendships::friend_id)
        .load(conn)?;
    Ok(ids.into_iter().map(UserId::from).collect())
}

/// Requests sent to `user`, with their senders, oldest first.
pub fn incoming_requests(
    conn: &mut DbConn,
    user: &UserId,
) -> Result<Vec<(UserRow, i64)>, AppError> {
    Ok(friend_requests::table
        .inner_join(users::table.on(users::id.eq(friend_requests::from_id)))
        .filter(friend_requests::to_id.eq(user.as_str()))
        .select((UserRow::as_select(), friend_requests::created_at))
        .order(friend_requests::created_at.asc())
        .load(conn)?)
}

/// Requests `user` sent, with their recipients, oldest first.
pub fn outgoing_requests(
    conn: &mut DbConn,
    user: &UserId,
) -> Result<Vec<(UserRow, i64)>, AppError> {
    Ok(friend_requests::table
        .inner_join(users::table.on(users::id.eq(friend_requests::to_id)))
        .filter(friend_requests::from_id.eq(user.as_str()))
        .select((UserRow::as_select(), friend_requests::created_at))
        .order(friend_requests::created_at.asc())
        .load(conn)?)
}

/// Blocks `blocked` for `blocker`, ending any friendship and pending requests both ways
/// (call inside a transaction). Blocking twice is not an error.
pub fn block(
    conn: &mut DbConn,
    blocker: &UserId,
    blocked: &UserId,
    now: i64,
) -> Result<(), AppError> {
    remove_friendship(conn, blocker, blocked)?;
    delete_request(conn, blocker, blocked)?;
    delete_request(conn, blocked, blocker)?;
    if !has_blocked(conn, blocker, blocked)? {
        diesel::insert_into(blocks::table)
            .values((
                blocks::blocker_id.eq(blocker.as_str()),
                blocks::blocked_id.eq(blocked.as_str()),
                blocks::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Lifts a block; returns whether there was one.
pub fn unblock(conn: &mut DbConn, blocker: &UserId, blocked: &UserId) -> Result<bool, AppError> {
    let n =
        diesel::delete(blocks::table.find((blocker.as_str(), blocked.as_str()))).execute(conn)?;
    Ok(n > 0)
}

pub fn blocked_by(conn: &mut DbConn, blocker: &UserId) -> Result<Vec<(UserRow, i64)>, AppError> {
    Ok(blocks::table
        .inner_join(users::table.on(users::id.eq(blocks::blocked_id)))
        .filter(blocks::blocker_id.eq(blocker.as_str()))
        .select((UserRow::as_select(), blocks::created_at))
        .order(users::username.asc())
        .load(conn)?)
}

/// Every friendship, request and block `user` is part of, either way (an account being deleted).
pub fn delete_all_of(conn: &mut DbConn, user: &UserId) -> Result<(), AppError> {
    let id = user.as_str();
    diesel::delete(
        friendships::table.filter(
            friendships::user_id
                .eq(id)
                .or(friendships::friend_id.eq(id)),
        ),
    )
    .execute(conn)?;
    diesel::delete(
        friend_requests::table.filter(
            friend_requests::from_id
                .eq(id)
                .or(friend_requests::to_id.eq(id)),
        ),
    )
    .execute(conn)?;
    diesel::delete(blocks::table.filter(blocks::blocker_id.eq(id).or(blocks::blocked_id.eq(id))))
        .execute(conn)?;
    Ok(())
}
