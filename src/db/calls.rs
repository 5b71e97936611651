//! Queries on `calls`: the record the router writes as each call happens, and the history
//! REST reads.
use super::schema::{calls, users};
use super::DbConn;
use crate::error::AppError;
use crate::ids::{CallId, UserId};
use crate::vocabulary::{EndReason, Media};
use diesel::prelude::*;
use std::collections::HashMap;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = calls)]
pub struct CallRow {
    pub id: CallId,
    pub caller_id: UserId,
    pub callee_id: UserId,
    pub media: Media,
    pub created_at: i64,
    pub answered_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub outcome: Option<EndReason>,
    /// The free-text detail a client gave (a decline's reason), if any.
    pub end_reason: Option<String>,
    /// In a cluster, the node whose router holds the call; `None` on a broker alone.
    pub owner: Option<String>,
}

pub fn insert(conn: &mut DbConn, row: &CallRow) -> Result<(), AppError> {
    diesel::insert_into(calls::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Several rows at once (the recorder's batches): one statement on Postgres, where each
/// statement is a round trip; row by row on SQLite, which is in-process and whose multi-row
/// insert diesel can't build for rows with NULLs left to defaults.
pub fn insert_many(conn: &mut DbConn, rows: &[CallRow]) -> Result<(), AppError> {
    match conn {
        _ if rows.is_empty() => {}
        DbConn::Pg(pg) => {
            diesel::insert_into(calls::table).values(rows).execute(pg)?;
        }
        DbConn::Sqlite(_) => {
            for row in rows {
                insert(conn, row)?;
            }
        }
    }
    Ok(())
}

pub fn mark_answered(conn: &mut DbConn, id: &CallId, at: i64) -> Result<(), AppError> {
    diesel::update(calls::table.find(id))
        .set(calls::answered_at.eq(Some(at)))
        .execute(conn)?;
    Ok(())
}

/// Ends a call that is still open; the first end recorded stays (in a cluster, the node that
/// saw a call's owner lost may record its end while the owner's own record is on its way).
pub fn mark_ended(
    conn: &mut DbConn,
    id: &CallId,
    at: i64,
    outcome: EndReason,
    detail: Option<&str>,
) -> Result<(), AppError> {
    diesel::update(calls::table.find(id).filter(calls::ended_at.is_null()))
        .set((
            calls::ended_at.eq(Some(at)),
            calls::outcome.eq(Some(outcome)),
            calls::end_reason.eq(detail),
        ))
        .execute(conn)?;
    Ok(())
}

/// Closes calls a crash left open as `failed`; returns how many. `owner`: in a cluster, only
/// this node's (from an earlier run under the same id) and those of no node; the others' calls
/// are live on them, and a lost node's are closed by [`close_calls_of`].
pub fn fail_open_calls(
    conn: &mut DbConn,
    now: i64,
    owner: Option<&str>,
) -> Result<usize, AppError> {
    let open = calls::table.filter(calls::ended_at.is_null());
    let end = (
        calls::ended_at.eq(Some(now)),
        calls::outcome.eq(Some(EndReason::Failed)),
    );
    Ok(match owner {
        None => diesel::update(open).set(end).execute(conn)?,
        Some(node) => diesel::update(open.filter(calls::owner.eq(node).or(calls::owner.is_null())))
            .set(end)
            .execute(conn)?,
    })
}

/// Call `id` is held by `owner` from now on (a draining node handed it over).
pub fn set_owner(conn: &mut DbConn, id: &CallId, owner: &str) -> Result<(), AppError> {
    diesel::update(calls::table.find(id))
        .set(calls::owner.eq(Some(owner)))
        .execute(conn)?;
    Ok(())
}

/// Closes the calls still open that lost node `node` held, as `connection_lost`.
pub fn close_calls_of(conn: &mut DbConn, node: &str, now: i64) -> Result<usize, AppError> {
    Ok(diesel::update(
        calls::table
            .filter(calls::ended_at.is_null())
            .filter(calls::owner.eq(node)),
    )
    .set((
        calls::ended_at.eq(Some(now)),
        calls::outcome.eq(Some(EndReason::ConnectionLost)),
    ))
    .execute(conn)?)
}

pub fn find(conn: &mut DbConn, id: &CallId) -> Result<Option<CallRow>, AppError> {
    Ok(calls::table
        .find(id)
        .select(CallRow::as_select())
        .first(conn)
        .optional()?)
}

/// `user`'s calls, newest first, strictly before the (created_at, id) cursor.
pub fn history(
    conn: &mut DbConn,
    user: &UserId,
    before: Option<(i64, CallId)>,
    limit: i64,
) -> Result<Vec<CallRow>, AppError> {
    let mut query = calls::table
        .filter(calls::caller_id.eq(user).or(calls::callee_id.eq(user)))
        .select(CallRow::as_select())
        .order((calls::created_at.desc(), calls::id.desc()))
        .limit(limit)
        .into_boxed();
    if let Some((at, id)) = before {
        query = query.filter(
            calls::created_at
                .lt(at)
                .or(calls::created_at.eq(at).and(calls::id.lt(id))),
        );
    }
    Ok(query.load(conn)?)
}

/// The usernames of these users, `None` for a deleted account.
pub fn usernames(
    conn: &mut DbConn,
    ids: &[&UserId],
) -> Result<HashMap<UserId, Option<String>>, AppError> {
    let rows: Vec<(UserId, String, Option<i64>)> = users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::username, users::deleted_at))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, name, deleted)| (id, deleted.is_none().then_some(name)))
        .collect())
}

/// Missed calls for `user` since they last looked at their history.
pub fn missed_since(conn: &mut DbConn, user: &UserId, since: i64) -> Result<i64, AppError> {
    Ok(calls::table
        .filter(calls::callee_id.eq(user))
        .filter(calls::created_at.gt(since))
        .filter(calls::answered_at.is_null())
        .filter(calls::outcome.eq_any(EndReason::MISSED))
        .count()
        .get_result(conn)?)
}
