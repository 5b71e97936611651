//! Finding people: search by username prefix, paginated by an opaque cursor.
use super::input;
use crate::auth::Identity;
use crate::db;
use crate::error::{AppError, ErrorBody, ErrorCode};
use crate::people::{self, Person};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{schema::Type, Object, ObjectBuilder};
use utoipa::{IntoParams, ToSchema};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users").route(web::get().to(search)));
}

/// A prefix is at most as long as a username.
const MAX_PREFIX_BYTES: usize = people::USERNAME_LEN.1;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    #[serde(default)]
    #[param(schema_with = prefix_schema)]
    pub q: String,
    #[param(schema_with = input::limit_schema)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn prefix_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        // Bytes after trimming: at most this many characters between the whitespace.
        .pattern(Some(format!("^\\s*[\\s\\S]{{0,{MAX_PREFIX_BYTES}}}\\s*$")))
        .description(Some(format!(
            "A username prefix, any case, at most {MAX_PREFIX_BYTES} bytes; empty lists \
             everyone. Results are in username order."
        )))
        .build()
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
        if prefix.len() > MAX_PREFIX_BYTES {
            return Err(AppError::new(
                ErrorCode::InvalidRequest,
                format!("q is at most {MAX_PREFIX_BYTES} characters"),
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

#[derive(Serialize, ToSchema)]
pub struct SearchPage {
    users: Vec<Person>,
    /// Pass as `cursor` to get the next page; null on the last page.
    next_cursor: Option<String>,
}

/// Finds people by username prefix, in username order, one page at a time. Users who
/// blocked the caller, and the caller, are left out.
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(SearchQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of people.", body = SearchPage),
        (status = 400, body = ErrorBody,
         description = "`invalid_request`: `q` or `limit` out of range; `invalid_cursor`"),
    ),
)]
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
    let rows = if people::all_username_chars(&prefix) {
        state
            .db
            .run(move |conn| db::users::search(conn, &viewer, &prefix, after.as_deref(), limit))
            .await?
    } else {
        Vec::new()
    };
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|u| u.username.clone()))
        .flatten();
    Ok(HttpResponse::Ok().json(SearchPage {
        users: rows.iter().map(Person::from).collect(),
        next_cursor,
    }))
}
