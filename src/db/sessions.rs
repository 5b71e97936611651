//! Queries on `sessions`: a session is found by the SHA-256 of its token, one primary-key
//! lookup per authenticated request.
use super::schema::{sessions, users};
use super::users::UserRow;
use super::DbConn;
use crate::error::AppError;
use crate::ids::UserId;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub token_hash: String,
    pub user_id: UserId,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
}

pub fn insert(conn: &mut DbConn, session: &SessionRow) -> Result<(), AppError> {
    diesel::insert_into(sessions::table)
        .values(session)
        .execute(conn)?;
    Ok(())
}

/// The live session for a token hash, with its user; expired sessions don't count.
pub fn find_live(
    conn: &mut DbConn,
    token_hash: &str,
    now: i64,
) -> Result<Option<(SessionRow, UserRow)>, AppError> {
    Ok(sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .filter(sessions::expires_at.gt(now))
        .select((SessionRow::as_select(), UserRow::as_select()))
        .first(conn)
        .optional()?)
}

/// Whether the session still exists and has not expired.
pub fn is_live(conn: &mut DbConn, token_hash: &str, now: i64) -> Result<bool, AppError> {
    let found: Option<String> = sessions::table
        .filter(sessions::token_hash.eq(token_hash))
        .filter(sessions::expires_at.gt(now))
        .select(sessions::token_hash)
        .first(conn)
        .optional()?;
    Ok(found.is_some())
}

/// Records a use and slides the expiry forward.
pub fn touch(
    conn: &mut DbConn,
    token_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), AppError> {
    diesel::update(sessions::table.find(token_hash))
        .set((
            sessions::last_used_at.eq(now),
            sessions::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut DbConn, token_hash: &str) -> Result<(), AppError> {
    diesel::delete(sessions::table.find(token_hash)).execute(conn)?;
    Ok(())
}

/// Deletes every session of `user` except `keep`, returning the hashes it removed so their
/// live sockets can be closed.
pub fn delete_all_for_user(
    conn: &mut DbConn,
    user: &UserId,
    keep: Option<&str>,
) -> Result<Vec<String>, AppError> {
    conn.transaction(|conn| {
        let mut query = sessions::table
            .filter(sessions::user_id.eq(user))
            .select(sessions::token_hash)
            .into_boxed();
        if let Some(keep) = keep {
            query = query.filter(sessions::token_hash.ne(keep.to_owned()));
        }
        let hashes: Vec<String> = query.load(conn)?;
        diesel::delete(sessions::table.filter(sessions::token_hash.eq_any(&hashes)))
            .execute(conn)?;
        Ok(hashes)
    })
}
