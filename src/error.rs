//! One error type for the whole broker. Its code is a stable snake_case string that clients
//! match on; it maps to an HTTP status for REST and becomes an `error` frame on the WebSocket.
use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// What went wrong, as a stable code clients match on.
// Deserialize reads a code back from its one spelling: the OpenAPI description names each
// response's codes that way (`http::openapi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // 400
    InvalidJson,
    InvalidRequest,
    InvalidUsername,
    InvalidPassword,
    InvalidDisplayName,
    InvalidCursor,
    InvalidFrame,
    InvalidSdp,
    CannotFriendSelf,
    CannotBlockSelf,
    CannotCallSelf,
    /// A Web Push subscription with a bad endpoint or keys.
    InvalidSubscription,
    // 401
    Unauthorized,
    InvalidCredentials,
    // 403
    Forbidden,
    NotFriends,
    WrongPassword,
    // 404
    NotFound,
    UserNotFound,
    RequestNotFound,
    CallNotFound,
    FriendNotFound,
    BlockNotFound,
    // 405
    MethodNotAllowed,
    // 409
    UsernameTaken,
    AlreadyFriends,
    RequestExists,
    UserBlocked,
    NotConnected,
    AlreadyInCall,
    /// The user already has as many sockets as `--max-devices-per-user` allows.
    TooManyDevices,
    InvalidTransition,
    /// A write collided with data already there (a unique constraint).
    Conflict,
    // 413 / 415 / 429
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    // 5xx
    Internal,
    Unavailable,
    /// Too much work queued (password hashing): retry after the Retry-After seconds.
    Overloaded,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidJson | InvalidRequest | InvalidUsername | InvalidPassword
            | InvalidDisplayName | InvalidCursor | InvalidFrame | InvalidSdp | CannotFriendSelf
            | CannotBlockSelf | CannotCallSelf | InvalidSubscription => StatusCode::BAD_REQUEST,
            Unauthorized | InvalidCredentials => StatusCode::UNAUTHORIZED,
            Forbidden | NotFriends | WrongPassword => StatusCode::FORBIDDEN,
            NotFound | UserNotFound | RequestNotFound | CallNotFound | FriendNotFound
            | BlockNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            UsernameTaken | AlreadyFriends | RequestExists | UserBlocked | NotConnected
            | AlreadyInCall | InvalidTransition | Conflict | TooManyDevices => StatusCode::CONFLICT,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Unavailable | Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds a client should wait before retrying (sent as Retry-After).
    pub retry_after: Option<u64>,
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn internal(detail: impl fmt::Display) -> Self {
        log::error!("internal error: {detail}");
        Self::new(ErrorCode::Internal, "internal error")
    }

    pub fn unavailable(detail: impl fmt::Display) -> Self {
        log::warn!("database unavailable: {detail}");
        Self::new(
            ErrorCode::Unavailable,
            "the database is unavailable, try again shortly",
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "missing, expired or revoked session token",
        )
    }

    pub fn user_not_found() -> Self {
        Self::new(ErrorCode::UserNotFound, "no such user")
    }
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    pub error: ErrorCode,
    /// For people, not programs: match on `error`.
    pub message: &'a str,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after {
            res.insert_header(("Retry-After", secs.to_string()));
        }
        res.json(ErrorBody {
            error: self.code,
            message: &self.message,
        })
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match err {
            E::NotFound => Self::new(ErrorCode::NotFound, "not found"),
            E::DatabaseError(K::UniqueViolation, _) => {
                Self::new(ErrorCode::Conflict, "conflicts with existing data")
            }
            E::DatabaseError(K::ClosedConnection | K::UnableToSendCommand, info) => {
                Self::unavailable(info.message())
            }
            E::DatabaseError(_, ref info) if is_connection_failure(info.message()) => {
                Self::unavailable(info.message())
            }
            other => Self::internal(other),
        }
    }
}

/// libpq reports a dead server connection as a generic error; recognise its wording.
fn is_connection_failure(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("terminating connection")
        || m.contains("server closed the connection")
        || m.contains("no connection to the server")
        || m.contains("connection to server")
        || m.contains("does not exist") && m.contains("database")
}

impl From<diesel::r2d2::PoolError> for AppError {
    fn from(err: diesel::r2d2::PoolError) -> Self {
        Self::unavailable(err)
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(err: actix_web::error::BlockingError) -> Self {
        Self::internal(err)
    }
}

/// Why the broker could not start: one line naming what is wrong and, for a setting, its flag.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot connect to the database: {0}")]
    DatabaseConnect(#[source] diesel::r2d2::PoolError),
    #[error("database migration failed: {0}")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the database failed during start-up: {0}")]
    Database(#[source] AppError),
    #[error("bcrypt setup failed: {0}")]
    Bcrypt(#[source] bcrypt::BcryptError),
    #[error("cannot listen on {addr} ({flag}): {source}")]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the relay listens on {0} (all interfaces): set --relay-public-ip to the address \
         clients reach it at"
    )]
    RelayPublicIpMissing(SocketAddr),
    #[error("cannot start the relay: {0}")]
    Relay(#[source] webrtc::turn::Error),
    #[error("cannot start {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {0}: its thread stopped")]
    ThreadStopped(&'static str),
    #[error("the VAPID private key kept in the database is not a P-256 private key")]
    VapidKey,
    #[error("--redis-url needs a Postgres database: every node of a cluster shares one (--database-url is sqlite://)")]
    ClusterNeedsPostgres,
    #[error("cannot join the cluster through --redis-url: {0}")]
    Redis(String),
}
