//! WebSocket close codes the broker sends (docs/protocol.md, "Closing"). 4000-4999 is the
//! application range; the rest are RFC 6455's.
/// The socket did not authenticate in time.
pub const AUTH_TIMEOUT: u16 = 4000;
/// The session token was revoked (logout, password change, account deletion).
pub const REVOKED: u16 = 4001;
/// The token given in `auth` is not a live session.
pub const UNAUTHORIZED: u16 = 4003;
/// The user already has `--max-devices-per-user` sockets.
pub const TOO_MANY_DEVICES: u16 = 4009;
/// The client does not read what it is sent (more than 1 MiB behind).
pub const NOT_READING: u16 = 4010;
/// Nothing heard from the client within the heartbeat timeout.
pub const HEARTBEAT_TIMEOUT: u16 = 4008;
/// The broker is shutting down (RFC 6455 "going away").
pub const SHUTDOWN: u16 = 1001;
/// A cluster node is draining (RFC 6455 "service restart"): reconnect, through the load
/// balancer, to another node; calls carry on there.
pub const RESTART: u16 = 1012;
/// Authentication could not finish (database unavailable): "try again later".
pub const TRY_AGAIN: u16 = 1013;
