//! Web Push for the signed-in session: the VAPID public key a browser subscribes with, and the
//! session's one subscription (registered, replaced, removed). What is pushed, and when, is
//! `src/push/`'s.
use crate::auth::Identity;
use crate::db::{self, push_subscriptions::SubscriptionRow};
use crate::error::{AppError, ErrorBody};
use crate::push::subscription::Target;
use crate::state::AppState;
use crate::time::now_ms;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/push/vapid-public-key").route(web::get().to(vapid_public_key)))
        .service(web::resource("/push/subscriptions").route(web::post().to(subscribe)))
        .service(web::resource("/push/subscriptions/current").route(web::delete().to(unsubscribe)));
}

#[derive(Serialize, ToSchema)]
pub struct VapidKeyView {
    /// The VAPID public key: base64url (unpadded) of the uncompressed P-256 point (65
    /// bytes), the `applicationServerKey` of `pushManager.subscribe`.
    public_key: String,
}

/// A browser's `PushSubscription`, as `subscription.toJSON()` gives it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionBody {
    /// The push service's URL for this browser: https (plain http only to loopback, and only
    /// with `--push-allow-insecure-endpoints`).
    #[schema(max_length = 1024)]
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    /// Ignored (browsers send `null`, or a time).
    #[serde(default, rename = "expirationTime")]
    pub expiration_time: Option<f64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionKeys {
    /// base64url (unpadded) of the browser's uncompressed P-256 public key (65 bytes).
    #[schema(min_length = 87, max_length = 87)]
    pub p256dh: String,
    /// base64url (unpadded) of the browser's 16-byte auth secret.
    #[schema(min_length = 22, max_length = 22)]
    pub auth: String,
}

#[derive(Serialize, ToSchema)]
pub struct Empty {}

/// The VAPID public key, for `pushManager.subscribe({applicationServerKey})`.
#[utoipa::path(
    get,
    path = "/push/vapid-public-key",
    tag = "push",
    responses((status = 200, description = "The key.", body = VapidKeyView)),
)]
async fn vapid_public_key(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(VapidKeyView {
        public_key: state.push.public_key().to_owned(),
    })
}

/// Registers the calling session's push subscription, replacing any earlier one. Its browser
/// is then rung for calls and told of missed calls and friend requests while the app is
/// closed (docs/protocol.md, "Web Push").
#[utoipa::path(
    post,
    path = "/push/subscriptions",
    tag = "push",
    security(("bearer" = [])),
    request_body = SubscriptionBody,
    responses(
        (status = 201, description = "Registered.", body = Empty),
        (status = 400, body = ErrorBody,
         description = "`invalid_subscription`: the endpoint is not an https URL, or a key has the wrong size"),
    ),
)]
async fn subscribe(
    state: web::Data<AppState>,
    me: Identity,
    body: web::Json<SubscriptionBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let target = Target::parse(
        &body.endpoint,
        &body.keys.p256dh,
        &body.keys.auth,
        state.config.push_allow_insecure_endpoints,
    )?;
    let row = SubscriptionRow {
        token_hash: me.token_hash.clone(),
        user_id: me.user_id(),
        endpoint: body.endpoint,
        p256dh: body.keys.p256dh,
        auth: body.keys.auth,
        created_at: now_ms(),
    };
    state
        .db
        .run(move |conn| db::push_subscriptions::replace(conn, &row))
        .await?;
    state.push.subscribed(&me.user_id(), &me.token_hash, target);
    // A logout that deleted the session (and the row with it) just before the line above
    // found nothing to forget in memory: look again now that a later one will find it.
    let hash = me.token_hash.clone();
    let live = state
        .db
        .run(move |conn| db::sessions::is_live(conn, &hash, now_ms()))
        .await?;
    if !live {
        state
            .push
            .unsubscribed(&me.user_id(), std::slice::from_ref(&me.token_hash));
        return Err(AppError::unauthorized());
    }
    if let Some(cluster) = &state.cluster {
        cluster.push_changed(&me.user_id());
    }
    Ok(HttpResponse::Created().json(Empty {}))
}

/// Removes the calling session's push subscription, if it has one.
#[utoipa::path(
    delete,
    path = "/push/subscriptions/current",
    tag = "push",
    security(("bearer" = [])),
    responses((status = 204, description = "Removed, or there was none.")),
)]
async fn unsubscribe(state: web::Data<AppState>, me: Identity) -> Result<HttpResponse, AppError> {
    let hash = me.token_hash.clone();
    state
        .db
        .run(move |conn| db::push_subscriptions::delete(conn, &hash))
        .await?;
    state
        .push
        .unsubscribed(&me.user_id(), std::slice::from_ref(&me.token_hash));
    if let Some(cluster) = &state.cluster {
        cluster.push_changed(&me.user_id());
    }
    Ok(HttpResponse::NoContent().finish())
}
