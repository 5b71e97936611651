//! Finding people: search by username prefix, paginated by an opaque cursor.
use super::input;
use crate::auth::Identity;
use crate::db;
use crate::error::{AppError, ErrorCode};
use crate::people::{self, Person};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users").route(web::get().to(search)));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// A search query, checked.
pub struct Search {
    /// Lowercased, at most 32 bytes.
    pub prefix: String,
    pub limit: i64,
    /// The last username of the previous page.
    pub after: Option<String>,
}

impl SearchQuery {
    pub fn check(self) -> Result<Search, AppError> {
        let prefix = self.q.trim().to_ascii_lowercase();
        if prefix.len() > 32 {
            return Err(AppError::new(
                ErrorCode::InvalidRequest,
                "q is at most 32 characters",
            ));
        }
        let limit = input::limit(self.limit)?;
        // The cursor is the last username of the previous page, so it must look like one.
        let after = match self.cursor {
            Some(c) => Some(people::username(&c).map_err(|_| {
                AppError::new(
                    ErrorCode::InvalidCursor,
                    "cursor is not one this server handed out",
                )
            })?),
            None => None,
        };
        Ok(Search {
            prefix,
            limit,
            after,
        })
    }
}

#[derive(Serialize)]
struct SearchPage {
    users: Vec<Person>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    next_cursor: Option<String>,
}

async fn search(
    state: web::Data<AppState>,
    me: Identity,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, AppError> {
    let Search {
        prefix,
        limit,
        after,
    } = query.into_inner().check()?;
    let viewer = me.user_id();
    let rows = state
        .db
        .run(move |conn| db::users::search(conn, &viewer, &prefix, after.as_deref(), limit))
        .await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|u| u.username.clone()))
        .flatten();
    Ok(HttpResponse::Ok().json(SearchPage {
        users: rows.iter().map(Person::from).collect(),
        next_cursor,
    }))
}
