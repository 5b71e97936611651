//! ICE servers for the signed-in user: the embedded relay and any external STUN/TURN servers,
//! with a fresh time-limited credential, ready for `new RTCPeerConnection({iceServers})`.
use crate::auth::Identity;
use crate::ice::Scope;
use crate::state::AppState;
use crate::wire::protocol::IceServer;
use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ice-servers").route(web::get().to(ice_servers)));
}

#[derive(Serialize, ToSchema)]
pub struct IceServersView {
    ice_servers: Vec<IceServer>,
    /// Seconds the credential stays valid.
    ttl: u64,
}

/// STUN/TURN servers with a fresh credential, for `new RTCPeerConnection({iceServers})`.
#[utoipa::path(
    get,
    path = "/ice-servers",
    tag = "calls",
    security(("bearer" = [])),
    responses((status = 200, description = "The servers.", body = IceServersView)),
)]
async fn ice_servers(state: web::Data<AppState>, me: Identity) -> HttpResponse {
    let view = IceServersView {
        ice_servers: state
            .ice
            .servers(&me.user_id(), Scope::Session(&me.token_hash)),
        ttl: state.ice.ttl().as_secs(),
    };
    // A credential is personal: no shared cache may keep it.
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(view)
}
