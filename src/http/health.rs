//! Liveness and readiness probes.
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use diesel::connection::SimpleConnection;
use serde::Serialize;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)));
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    #[schema(value_type = String)]
    status: &'static str,
}

/// The process is alive and serving.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    responses((status = 200, description = "Alive.", body = Health)),
)]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// The database answers, and in a cluster Redis does too; 503 `unavailable` otherwise, the
/// message saying which.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    responses(
        (status = 200, description = "The database (and in a cluster, Redis) answers.", body = Health),
        (status = 503, body = crate::error::ErrorBody, description = "`unavailable`"),
    ),
)]
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    if let Some(cluster) = &state.cluster {
        // Local users are still served meanwhile; a load balancer sends new ones elsewhere.
        cluster.ready().map_err(|why| {
            AppError::new(
                crate::error::ErrorCode::Unavailable,
                format!("not ready: {why}"),
            )
        })?;
    }
    state
        .db
        .run(|conn| {
            conn.batch_execute("SELECT 1")
                .map_err(AppError::unavailable)
        })
        .await?;
    Ok(HttpResponse::Ok().json(Health { status: "ready" }))
}
