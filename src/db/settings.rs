//! Queries on `settings`: small named values the broker generates once and keeps.
use super::schema::settings;
use super::DbConn;
use crate::error::AppError;
use diesel::prelude::*;

pub fn get(conn: &mut DbConn, name: &str) -> Result<Option<String>, AppError> {
    Ok(settings::table
        .find(name)
        .select(settings::value)
        .first(conn)
        .optional()?)
}

/// Stores `value` under `name` unless a value is already there; returns the stored value, so
/// two processes starting at once agree.
pub fn get_or_insert(conn: &mut DbConn, name: &str, value: &str) -> Result<String, AppError> {
    if let Some(existing) = get(conn, name)? {
        return Ok(existing);
    }
    let inserted = diesel::insert_into(settings::table)
        .values((settings::name.eq(name), settings::value.eq(value)))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(value.to_owned()),
        Err(_) => get(conn, name)?.ok_or_else(|| AppError::internal("setting vanished")),
    }
}
