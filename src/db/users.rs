//! Queries on `users`.
use super::schema::{blocks, users};
use super::DbConn;
use crate::error::{AppError, ErrorCode};
use crate::ids::UserId;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at: i64,
    pub last_seen: Option<i64>,
    pub calls_seen_at: i64,
}

impl UserRow {
    pub fn user_id(&self) -> UserId {
        self.id.clone()
    }
}

/// Inserts a new user; a name already taken (even by a concurrent request) is `username_taken`.
pub fn insert(conn: &mut DbConn, user: &UserRow) -> Result<(), AppError> {
    match diesel::insert_into(users::table).values(user).execute(conn) {
        Ok(_) => Ok(()),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Err(
            AppError::new(ErrorCode::UsernameTaken, "that username is already taken"),
        ),
        Err(e) => Err(e.into()),
    }
}

/// The account named `name`; deleted accounts have no name any more.
pub fn find_by_username(conn: &mut DbConn, name: &str) -> Result<Option<UserRow>, AppError> {
    Ok(users::table
        .filter(users::username.eq(name))
        .filter(users::deleted_at.is_null())
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// The user named `name` if `holds` is true of them, else the error `missing` makes: the one
/// shape of "find them, check or act on them, or say there is no such user/request/friend".
pub fn find_named_if(
    conn: &mut DbConn,
    name: &str,
    missing: impl FnOnce() -> AppError,
    holds: impl FnOnce(&mut DbConn, &UserRow) -> Result<bool, AppError>,
) -> Result<UserRow, AppError> {
    match find_by_username(conn, name)? {
        Some(user) if holds(conn, &user)? => Ok(user),
        _ => Err(missing()),
    }
}

/// What is left of a deleted account: its id, for the calls other people had with it. The name
/// (`deleted-<id>`, longer than any username may be, so never taken again or found), display
/// name and password hash (one bcrypt never matches) are scrubbed.
pub fn anonymize(conn: &mut DbConn, id: &UserId, now: i64) -> Result<(), AppError> {
    diesel::update(users::table.find(id.as_str()))
        .set((
            users::username.eq(format!("deleted-{id}")),
            users::display_name.eq(DELETED_DISPLAY_NAME),
            users::password_hash.eq("!"),
            users::last_seen.eq(None::<i64>),
            users::deleted_at.eq(Some(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// How a deleted account is shown.
pub const DELETED_DISPLAY_NAME: &str = "Deleted account";

pub fn find_by_id(conn: &mut DbConn, id: &UserId) -> Result<Option<UserRow>, AppError> {
    Ok(users::table
        .find(id.as_str())
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// Users whose name starts with `prefix`, after `after` in name order, hiding the viewer and
/// anyone who blocked the viewer.
pub fn search(
    conn: &mut DbConn,
    viewer: &UserId,
    prefix: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<UserRow>, AppError> {
    let pattern = format!("{}%", escape_like(prefix));
    let blocked_me = blocks::table
        .filter(blocks::blocked_id.eq(viewer.as_str()))
        .select(blocks::blocker_id);
    let mut query = users::table
        .filter(users::username.like(pattern).escape('\\'))
        .filter(users::deleted_at.is_null())
        .filter(users::id.ne(viewer.as_str()))
        .filter(users::id.ne_all(blocked_me))
        .select(UserRow::as_select())
        .order(users::username.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::username.gt(after.to_owned()));
    }
    Ok(query.load(conn)?)
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn set_display_name(conn: &mut DbConn, id: &UserId, name: &str) -> Result<(), AppError> {
    diesel::update(users::table.find(id.as_str()))
        .set(users::display_name.eq(name))
        .execute(conn)?;
    Ok(())
}

pub fn set_password_hash(conn: &mut DbConn, id: &UserId, hash: &str) -> Result<(), AppError> {
    diesel::update(users::table.find(id.as_str()))
        .set(users::password_hash.eq(hash))
        .execute(conn)?;
    Ok(())
}

/// Each user's own last-seen time, in one transaction.
pub fn set_last_seen_each(conn: &mut DbConn, seen: &[(UserId, i64)]) -> Result<(), AppError> {
    conn.transaction(|conn| {
        for (id, at) in seen {
            diesel::update(users::table.find(id.as_str()))
                .set(users::last_seen.eq(Some(*at)))
                .execute(conn)?;
        }
        Ok(())
    })
}

pub fn set_last_seen_many(conn: &mut DbConn, ids: &[UserId], at: i64) -> Result<(), AppError> {
    let ids: Vec<&str> = ids.iter().map(UserId::as_str).collect();
    diesel::update(users::table.filter(users::id.eq_any(ids)))
        .set(users::last_seen.eq(Some(at)))
        .execute(conn)?;
    Ok(())
}

pub fn set_calls_seen_at(conn: &mut DbConn, id: &UserId, at: i64) -> Result<(), AppError> {
    diesel::update(users::table.find(id.as_str()))
        .set(users::calls_seen_at.eq(at))
        .execute(conn)?;
    Ok(())
}
