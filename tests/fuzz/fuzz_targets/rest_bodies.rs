//! What REST clients send, read as the handlers read it: every JSON request body type through
//! serde_json (what `web::Json` runs) and then the checks its handler applies before touching
//! the database; the query strings of history and user search through `web::Query`'s own
//! parser and their checks (limits, cursors, the search prefix); and request paths through the
//! routes' patterns and `web::Path`'s deserializer, then the username check.
//!
//! The first byte picks what the rest is; see `Kind`.
#![no_main]

use actix_router::{Path, PathDeserializer, ResourceDef, Url};
use actix_web::http::Uri;
use actix_web::web::Query;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use switchboard::error::AppError;
use switchboard::http::auth::{LoginBody, RegisterBody};
use switchboard::http::calls::{parse_cursor, HistoryQuery, StartBody};
use switchboard::http::friends::RequestBody;
use switchboard::http::input;
use switchboard::http::me::{DeleteBody, PasswordBody, UpdateBody};
use switchboard::http::users::SearchQuery;
use switchboard::people;

/// Routes that take a username in their path.
const USERNAME_ROUTES: [&str; 4] = [
    "/api/v1/friends/requests/{username}/accept",
    "/api/v1/friends/requests/{username}",
    "/api/v1/friends/{username}",
    "/api/v1/blocks/{username}",
];
/// Routes that take a call id in their path (used as given: an unknown id is a 404).
const CALL_ROUTES: [&str; 2] = ["/api/v1/calls/{id}", "/api/v1/calls/{id}/end"];

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 12 {
        0 => register(rest),
        1 => {
            // Login checks nothing before the lookup: the name is only trimmed and lowercased.
            if let Some(body) = body::<LoginBody>(rest) {
                let _ = body.username.trim().to_ascii_lowercase();
            }
        }
        2 => {
            if let Some(body) = body::<RequestBody>(rest) {
                let _ = check_username(&body.username);
            }
        }
        3 => {
            if let Some(body) = body::<UpdateBody>(rest) {
                check_display_name(&body.display_name);
            }
        }
        4 => {
            if let Some(body) = body::<PasswordBody>(rest) {
                check_password(&body.new_password);
            }
        }
        5 => {
            let _ = body::<DeleteBody>(rest);
        }
        6 => {
            if let Some(body) = body::<StartBody>(rest) {
                let _ = check_username(&body.to);
            }
        }
        7 => history(rest),
        8 => search(rest),
        9 => {
            if let Some(name) = path_segment(rest, &USERNAME_ROUTES) {
                let _ = check_username(&name);
            }
        }
        10 => {
            let _ = path_segment(rest, &CALL_ROUTES);
        }
        _ => {
            // Every body type, so a mutation of one kind's input reaches the others.
            let _ = body::<RegisterBody>(rest);
            let _ = body::<PasswordBody>(rest);
            let _ = body::<StartBody>(rest);
        }
    }
});

/// What `web::Json<T>` does with a body.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

fn register(bytes: &[u8]) {
    let Some(body) = body::<RegisterBody>(bytes) else {
        return;
    };
    let _ = check_username(&body.username);
    check_password(&body.password);
    if let Some(name) = &body.display_name {
        check_display_name(name);
    }
}

/// A username that passes is 3-32 of [a-z0-9_.-], and passes again as it is.
fn check_username(raw: &str) -> Result<String, AppError> {
    let checked = people::username(raw);
    if let Ok(name) = &checked {
        assert!((3..=32).contains(&name.len()), "{name:?}");
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'_' | b'.' | b'-')),
            "{name:?}"
        );
        assert_eq!(people::username(name).ok().as_ref(), Some(name));
    }
    checked
}

fn check_password(raw: &str) {
    if people::password(raw).is_ok() {
        assert!((8..=72).contains(&raw.len()));
    }
}

fn check_display_name(raw: &str) {
    if let Ok(name) = people::display_name(raw) {
        assert!((1..=64).contains(&name.chars().count()), "{name:?}");
        assert!(!name.chars().any(char::is_control), "{name:?}");
    }
}

/// `GET /calls?limit=&cursor=`: a cursor that parses is one the server could have made, and
/// reads back the same when made again.
fn history(bytes: &[u8]) {
    let Ok(query) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(query) = Query::<HistoryQuery>::from_query(query) else {
        return;
    };
    let query = query.into_inner();
    if let Ok(limit) = input::limit(query.limit) {
        assert!((1..=100).contains(&limit));
    }
    if let Some(Ok((at, id))) = query.cursor.as_deref().map(parse_cursor) {
        let again = format!("{at}.{id}");
        let (at2, id2) = parse_cursor(&again).expect("a cursor the server made does not parse");
        assert_eq!((at, id.to_string()), (at2, id2.to_string()));
    }
}

/// `GET /users?q=&limit=&cursor=`.
fn search(bytes: &[u8]) {
    let Ok(query) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(query) = Query::<SearchQuery>::from_query(query) else {
        return;
    };
    if let Ok(search) = query.into_inner().check() {
        assert!(search.prefix.len() <= 32);
        assert!((1..=100).contains(&search.limit));
        if let Some(after) = &search.after {
            assert!(people::username(after).is_ok());
        }
    }
}

/// The path's segment as `web::Path<String>` gives it, for the first route that matches.
fn path_segment(bytes: &[u8], routes: &[&str]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let uri: Uri = text.parse().ok()?;
    for route in routes {
        let mut path = Path::new(Url::new(uri.clone()));
        if ResourceDef::new(*route).capture_match_info(&mut path) {
            return String::deserialize(PathDeserializer::new(&path)).ok();
        }
    }
    None
}
