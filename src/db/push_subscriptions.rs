//! Queries on `push_subscriptions`: one Web Push subscription per session, keyed by the
//! session's token hash, deleted with the session by the foreign key.
use super::schema::{push_subscriptions, sessions};
use super::DbConn;
use crate::error::AppError;
use crate::ids::UserId;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = push_subscriptions)]
pub struct SubscriptionRow {
    pub token_hash: String,
    pub user_id: UserId,
    pub endpoint: String,
    /// The browser's P-256 key, base64url as the browser gave it.
    pub p256dh: String,
    /// The browser's 16-byte auth secret, base64url.
    pub auth: String,
    pub created_at: i64,
}

/// Stores `row` as its session's subscription, replacing any earlier one.
pub fn replace(conn: &mut DbConn, row: &SubscriptionRow) -> Result<(), AppError> {
    conn.transaction(|conn| {
        diesel::delete(push_subscriptions::table.find(&row.token_hash)).execute(conn)?;
        diesel::insert_into(push_subscriptions::table)
            .values(row)
            .execute(conn)?;
        Ok(())
    })
}

/// Deletes the session's subscription; whether there was one.
pub fn delete(conn: &mut DbConn, token_hash: &str) -> Result<bool, AppError> {
    let n = diesel::delete(push_subscriptions::table.find(token_hash)).execute(conn)?;
    Ok(n > 0)
}

/// Deletes the session's subscription if it still points at `endpoint` (the push service said
/// it is gone; a newer one that replaced it stays).
pub fn delete_gone(conn: &mut DbConn, token_hash: &str, endpoint: &str) -> Result<(), AppError> {
    diesel::delete(
        push_subscriptions::table
            .filter(push_subscriptions::token_hash.eq(token_hash))
            .filter(push_subscriptions::endpoint.eq(endpoint)),
    )
    .execute(conn)?;
    Ok(())
}

/// `user`'s subscriptions whose session has not expired: a node of a cluster reloads them
/// when another node says they changed.
pub fn live_of(
    conn: &mut DbConn,
    user: &UserId,
    now: i64,
) -> Result<Vec<SubscriptionRow>, AppError> {
    Ok(push_subscriptions::table
        .inner_join(sessions::table)
        .filter(push_subscriptions::user_id.eq(user.as_str()))
        .filter(sessions::expires_at.gt(now))
        .select(SubscriptionRow::as_select())
        .load(conn)?)
}

/// Every subscription whose session has not expired, to load at start.
pub fn all_live(conn: &mut DbConn, now: i64) -> Result<Vec<SubscriptionRow>, AppError> {
    Ok(push_subscriptions::table
        .inner_join(sessions::table)
        .filter(sessions::expires_at.gt(now))
        .select(SubscriptionRow::as_select())
        .load(conn)?)
}
