//! The WebSocket edge: the per-connection session actor, its frame budget, and the upgrade
//! route at `GET /ws`. The frames themselves are the shared vocabulary in [`crate::wire`].
pub mod backlog;
pub mod frame_budget;
pub mod frame_guard;
pub mod session;
pub mod strangers;
pub mod traffic;

use crate::client_addr;
use crate::error::{AppError, ErrorCode};
use crate::origin;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use strangers::Strangers;

/// Largest text frame accepted; bigger ones close the socket with 1009 as soon as their header
/// arrives (see [`frame_guard`]).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// The socket route, `GET /ws`, with the count of sockets not yet authenticated (shared by
/// every worker).
pub fn configure(
    cfg: &mut web::ServiceConfig,
    strangers: web::Data<Strangers>,
    user_budgets: web::Data<frame_budget::UserBudgets>,
) {
    cfg.app_data(strangers)
        .app_data(user_budgets)
        .service(web::resource("/ws").route(web::get().to(connect)));
}

/// Upgrades to a WebSocket; the client authenticates with its first frame, never in the URL.
/// A browser page of another origin may not open it (browsers don't ask CORS for WebSockets):
/// upgrades whose Origin is neither the broker's own nor listed in `--cors-origins` get 403.
///
/// The access log skips `/ws` (its state would live as long as the socket): the upgrade is
/// logged here instead, in the same form, when it is answered.
pub async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
    strangers: web::Data<Strangers>,
    user_budgets: web::Data<frame_budget::UserBudgets>,
) -> Result<HttpResponse, actix_web::Error> {
    let client = client_addr::of(&req, &state.config.trusted_proxies);
    let answer = upgrade(&req, stream, state, client, &strangers, user_budgets);
    let status = match &answer {
        Ok(response) => response.status(),
        Err(err) => err.as_response_error().status_code(),
    };
    let client_text = client.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
    log::info!("{client_text} \"GET /ws\" {}", status.as_u16());
    answer
}

fn upgrade(
    req: &HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
    client: Option<std::net::IpAddr>,
    strangers: &Strangers,
    user_budgets: web::Data<frame_budget::UserBudgets>,
) -> Result<HttpResponse, actix_web::Error> {
    if !origin::allowed(req.headers(), &state.config.cors_origins) {
        return Err(AppError::new(
            ErrorCode::Forbidden,
            "this origin may not open the socket (see --cors-origins)",
        )
        .into());
    }
    let ticket = strangers.admit(client)?;
    let stream = frame_guard::FrameGuard::new(stream, MAX_FRAME_BYTES);
    let session = session::UserSession::new(state, ticket, user_budgets);
    actix_web_actors::ws::WsResponseBuilder::new(session, req, stream)
        .frame_size(MAX_FRAME_BYTES)
        .start()
}
