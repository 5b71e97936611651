//! The REST side of authentication: `Authorization: Bearer <token>` turned into the caller's
//! [`Identity`] by an extractor, so a handler that takes an `Identity` is authenticated.
use crate::auth::identity::{authenticate, Identity};
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

impl FromRequest for Identity {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::internal("app state missing"))?;
            let token = token.ok_or_else(AppError::unauthorized)?;
            authenticate(&state.db, state.config.session_lifetime, &token).await
        })
    }
}
