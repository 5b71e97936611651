//! Headers every response carries, and CORS. Responses are never to be sniffed into another
//! type, framed by another site, or leak the page's URL in a Referer; the page adds its own
//! Content-Security-Policy (`web_client.rs`). CORS is off unless `--cors-origins` lists
//! origins: then those (and the broker's own) may call the API from their pages.
use crate::origin;
use actix_cors::Cors;
use actix_web::http::header;
use actix_web::middleware::{Condition, DefaultHeaders};

pub fn headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
}

pub fn cors(listed: &[String]) -> Condition<Cors> {
    let listed = listed.to_vec();
    let enabled = !listed.is_empty();
    let cors = Cors::default()
        .allowed_origin_fn(move |_, request| origin::allowed(&request.headers, &listed))
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER])
        .max_age(3600);
    Condition::new(enabled, cors)
}
