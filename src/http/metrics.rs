//! `GET /metrics` in the Prometheus text format, and the middleware that times every request
//! by its route template. The metrics themselves are defined in `crate::metrics`.
use crate::metrics;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use std::time::Instant;

/// `GET /metrics`, on the main listener or on the `--metrics-listen` one.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(scrape)));
}

async fn scrape() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(metrics::get().encode())
}

/// Times a request until its response and labels it with the route it matched, never with the
/// raw path (which would carry ids and make one series per user).
pub async fn timed(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let res = next.call(req).await?;
    let route = res.request().match_pattern();
    metrics::get().rest_request(
        res.request().method(),
        route.as_deref().unwrap_or("unmatched"),
        start.elapsed(),
    );
    Ok(res)
}
