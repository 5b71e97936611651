//! The UserSession actor: one per WebSocket connection (one device of a user). It
//! authenticates the socket, parses each frame once, keeps the heartbeat and the frame budget,
//! and hands presence to the PresenceHub and calls and signaling to the CallRouter. It
//! registers with both after `auth` and unregisters when it stops, on every exit path.
use super::backlog;
use super::frame_budget::UserBudgets;
use super::frame_guard;
use super::strangers::Ticket;
use super::traffic::{self, Traffic};
use crate::auth::identity::authenticate;
use crate::auth::token;
use crate::calls::router::{ActOnCall, Attach, CallAction, Detach, PlaceCall, RelaySignal};
use crate::db;
use crate::error::{AppError, ErrorCode};
use crate::ice::Scope;
use crate::ids::{CallId, DeviceId, UserId};
use crate::people::{self, Party, UserView};
use crate::presence::hub::{Connect, Disconnect, SetStatus};
use crate::state::AppState;
use crate::time::now_ms;
use crate::vocabulary::{Media, SignalKind};
use crate::wire::close;
use crate::wire::device::{DeviceHandle, ToDevice};
use crate::wire::protocol::{ClientFrame, ClientRef, FriendPresence, Heartbeat, ServerFrame};
use actix::prelude::*;
use actix_web::web;
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

/// Most bytes the session actor may take. A socket's context is one allocation of 448 bytes
/// plus the actor; at 64 it stays in the allocator's 512-byte class, as a bare
/// actix-web-actors socket does, where 96 bytes took it to 640.
pub const SESSION_SIZE: usize = 64;

/// Longest status message a user may set.
const MAX_STATUS_MESSAGE: usize = 140;

/// The actor lives inside its socket's context, one allocation (with actix's and actix-web's
/// per-socket state) whose allocator size class a few words can tip: keep it within
/// [`SESSION_SIZE`] (a test checks), boxing what an idle socket does not need.
pub struct UserSession {
    state: web::Data<AppState>,
    /// The socket's user and device, once `auth` succeeded.
    me: Option<Box<Me>>,
    /// What the socket holds until `welcome`, dropped then: an idle authenticated socket
    /// carries none of it.
    arrival: Option<Box<Arrival>>,
    last_heard: Instant,
    /// The frame budgets and the backlog, while there is traffic: made at the first frame in or
    /// out, dropped at a pong that finds them settled.
    traffic: Option<Box<Traffic>>,
    /// Closing because its session was revoked (logout, password change, account deletion).
    revoked: bool,
    /// A `call.invite` of this device is waiting for the database or the router.
    inviting: bool,
}

/// An authenticated socket's user and device.
struct Me {
    party: Party,
    /// This device as the hubs hold it (its id; it counts the frames they queued for this
    /// socket that it has not written out yet).
    device: DeviceHandle,
    user_budgets: web::Data<UserBudgets>,
}

/// A socket's state between its upgrade and `welcome`.
struct Arrival {
    /// An `auth` frame is being checked.
    authenticating: bool,
    /// Set by the authentication work just before it registers the device with the hub and
    /// the router, so `stopped` unregisters it even if the socket dies before `me` is set.
    registering: Rc<Cell<Option<(UserId, DeviceId)>>>,
    /// Handed to `Me` at `welcome`.
    user_budgets: web::Data<UserBudgets>,
    /// This socket's place among those not authenticated yet, held for its `Drop`, which gives
    /// it back (on `welcome`, when the arrival is dropped).
    _stranger: Ticket,
    /// Closes the socket if `auth` has not succeeded in time; cancelled on `welcome`.
    auth_timeout: Option<SpawnHandle>,
}

impl UserSession {
    pub fn new(
        state: web::Data<AppState>,
        stranger: Ticket,
        user_budgets: web::Data<UserBudgets>,
    ) -> Self {
        Self {
            state,
            me: None,
            arrival: Some(Box::new(Arrival {
                authenticating: false,
                registering: Rc::default(),
                user_budgets,
                _stranger: stranger,
                auth_timeout: None,
            })),
            last_heard: Instant::now(),
            traffic: None,
            revoked: false,
            inviting: false,
        }
    }

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: &str) {
        ctx.close(Some(CloseReason {
            code: CloseCode::from(code),
            description: Some(reason.to_owned()),
        }));
        ctx.stop();
    }

    fn traffic(&mut self) -> &mut Traffic {
        traffic::get(&mut self.traffic, self.state.config.ws_max_frame_rate)
    }

    fn close_oversized(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.close(
            ctx,
            u16::from(CloseCode::Size),
            "frames are limited to 64 KiB",
        );
    }

    fn send(&mut self, ctx: &mut ws::WebsocketContext<Self>, frame: ServerFrame<'_>) {
        self.text(ctx, frame.encode());
    }

    /// Every frame to the client goes through here: it counts what the client has yet to read,
    /// pings when enough was sent, and closes a socket whose client has fallen too far behind.
    fn text(&mut self, ctx: &mut ws::WebsocketContext<Self>, frame: bytestring::ByteString) {
        let backlog = &mut self.traffic().backlog;
        let ping = backlog.sent(frame.len());
        let unread = backlog.unread();
        ctx.text(frame);
        if let Some(payload) = ping {
            ctx.ping(&payload);
        }
        if unread > backlog::MAX_UNREAD {
            self.close(ctx, close::NOT_READING, "not reading what it is sent");
        }
    }

    fn send_error(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        reference: &ClientRef,
        err: &AppError,
    ) {
        crate::metrics::get().error_frame(err.code);
        let frame = ServerFrame::Error {
            reference: reference.as_ref(),
            error: err.code,
            message: &err.message,
        };
        self.send(ctx, frame);
    }

    fn ack(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        reference: &ClientRef,
        call_id: Option<&CallId>,
        merged: Option<bool>,
    ) {
        if let Some(reference) = reference.as_ref() {
            self.send(
                ctx,
                ServerFrame::Ack {
                    reference,
                    call_id,
                    merged,
                    ice_servers: None,
                },
            );
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(bad) => {
                let err = AppError::new(ErrorCode::InvalidFrame, bad.message);
                return self.send_error(ctx, &bad.reference, &err);
            }
        };
        match (&self.me, frame) {
            (_, ClientFrame::Ping { id }) => self.send(
                ctx,
                ServerFrame::Pong {
                    reference: id.as_ref(),
                },
            ),
            (None, ClientFrame::Auth { id, token })
                if self.arrival.as_ref().is_some_and(|a| !a.authenticating) =>
            {
                self.authenticate(id, token, ctx)
            }
            (None, frame) => {
                let err = AppError::new(ErrorCode::Unauthorized, "send an auth frame first");
                self.send_error(ctx, &frame.into_id(), &err);
            }
            (Some(_), ClientFrame::Auth { id, .. }) => {
                let err = AppError::new(
                    ErrorCode::InvalidFrame,
                    "this connection is already authenticated",
                );
                self.send_error(ctx, &id, &err);
            }
            (Some(_), frame) => self.on_frame(frame, ctx),
        }
    }

    fn authenticate(&mut self, id: ClientRef, token: String, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(arrival) = self.arrival.as_mut() else {
            return;
        };
        arrival.authenticating = true;
        let registering = arrival.registering.clone();
        let state = self.state.clone();
        let (device_id, recipient) = (DeviceId::new(), ctx.address().downgrade().recipient());
        let work = async move {
            let identity = authenticate(&state.db, state.config.session_lifetime, &token).await?;
            // Frames the hubs send it wait in the mailbox until this work is done (`ctx.wait`),
            // so the session holds the handle before it takes any of them.
            let session_key = token::key(&identity.token_hash);
            let device = DeviceHandle::new(device_id, session_key, recipient);
            let user = identity.user.clone();
            let (friends, missed) = {
                let (id, seen) = (user.user_id(), user.calls_seen_at);
                state
                    .db
                    .run(move |conn| {
                        Ok((
                            db::relations::friends_of(conn, &id)?,
                            db::calls::missed_since(conn, &id, seen)?,
                        ))
                    })
                    .await?
            };
            registering.set(Some((user.user_id(), device_id)));
            let connected = state
                .presence
                .send(Connect {
                    user: user.user_id(),
                    username: user.username.clone(),
                    device: device.clone(),
                    friends: friends.iter().map(|f| f.user_id()).collect(),
                })
                .await
                .map_err(AppError::internal)?;
            let online = match connected {
                Ok(online) => online,
                Err(refused) => {
                    // Not registered after all: nothing to unregister when the socket stops.
                    registering.set(None);
                    return Err(refused);
                }
            };
            let calls = state
                .router
                .send(Attach {
                    user: user.user_id(),
                    device: device.clone(),
                })
                .await
                .map_err(AppError::internal)?;
            // A revocation between the token check above and the hub registering this device
            // found nothing to close: look again now that any later one will find it.
            let token_hash = identity.token_hash;
            let live = {
                let token_hash = token_hash.clone();
                state
                    .db
                    .run(move |conn| db::sessions::is_live(conn, &token_hash, now_ms()))
                    .await?
            };
            if !live {
                return Ok(None);
            }
            let friends: Vec<FriendPresence> = friends
                .into_iter()
                .map(|f| FriendPresence {
                    presence: crate::presence::of(&f, &online),
                    display_name: f.display_name,
                })
                .collect();
            Ok::<_, AppError>(Some((user, friends, calls, missed, token_hash, device)))
        };
        ctx.wait(work.into_actor(self).map(move |result, session, ctx| {
            if let Some(arrival) = session.arrival.as_mut() {
                arrival.authenticating = false;
            }
            match result {
                Ok(None) => {
                    session.revoked = true;
                    let err = AppError::new(ErrorCode::Unauthorized, "the session was revoked");
                    session.send_error(ctx, &id, &err);
                    session.close(ctx, close::REVOKED, "session revoked");
                }
                Ok(Some((user, friends, calls, missed_calls, token_hash, device))) => {
                    // Gives back its place among the strangers, and its timeout.
                    let Some(arrival) = session.arrival.take() else {
                        return;
                    };
                    if let Some(timer) = arrival.auth_timeout {
                        ctx.cancel_future(timer);
                    }
                    let device_id = device.id();
                    session.me = Some(Box::new(Me {
                        party: Party::from(&user),
                        device,
                        user_budgets: arrival.user_budgets,
                    }));
                    crate::metrics::get().sockets_authenticated.inc();
                    let config = &session.state.config;
                    let welcome = ServerFrame::Welcome {
                        user: &UserView::from(&user),
                        device_id: &device_id,
                        friends,
                        calls,
                        missed_calls,
                        heartbeat: Heartbeat {
                            interval_ms: config.heartbeat_interval.as_millis() as u64,
                            timeout_ms: config.heartbeat_timeout.as_millis() as u64,
                        },
                        ice_servers: &session
                            .state
                            .ice
                            .servers(&user.user_id(), Scope::Session(&token_hash)),
                    };
                    let welcome = welcome.encode();
                    session.text(ctx, welcome);
                }
                Err(err) => {
                    session.send_error(ctx, &id, &err);
                    // Never leave a socket half registered: the client reconnects and retries.
                    if err.code == ErrorCode::Unauthorized {
                        session.close(ctx, close::UNAUTHORIZED, "invalid token");
                    } else if err.code == ErrorCode::TooManyDevices {
                        session.close(ctx, close::TOO_MANY_DEVICES, "too many devices");
                    } else {
                        session.close(ctx, close::TRY_AGAIN, "authentication failed, try again");
                    }
                }
            }
        }));
    }

    fn on_frame(&mut self, frame: ClientFrame, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(me) = &self.me else { return };
        match frame {
            ClientFrame::PresenceSet {
                id,
                status,
                message,
            } => {
                let message = match status_message(message) {
                    Ok(message) => message,
                    Err(err) => return self.send_error(ctx, &id, &err),
                };
                self.state.presence.do_send(SetStatus {
                    user: me.party.user.clone(),
                    status,
                    message,
                });
                self.ack(ctx, &id, None, None);
            }
            ClientFrame::CallInvite { id, to, media } => self.invite(id, to, media, ctx),
            ClientFrame::CallAccept { id, call_id } => {
                self.act(id, call_id, CallAction::Accept, ctx)
            }
            ClientFrame::CallReject {
                id,
                call_id,
                reason,
            } => self.act(
                id,
                call_id,
                CallAction::Reject {
                    reason: clip(reason),
                },
                ctx,
            ),
            ClientFrame::CallCancel { id, call_id } => {
                self.act(id, call_id, CallAction::Cancel, ctx)
            }
            ClientFrame::CallHangup {
                id,
                call_id,
                reason,
            } => self.act(
                id,
                call_id,
                CallAction::Hangup {
                    reason: clip(reason),
                },
                ctx,
            ),
            ClientFrame::CallResume { id, call_id } => {
                self.act(id, call_id, CallAction::Resume, ctx)
            }
            ClientFrame::Signal {
                id,
                call_id,
                kind,
                sdp,
                candidate,
            } => {
                if let Err(err) = validate_signal(kind, sdp.as_deref(), candidate.is_some()) {
                    return self.send_error(ctx, &id, &err);
                }
                // Relay only what the kind carries, so no unchecked SDP rides on a candidate.
                let (sdp, candidate) = match kind {
                    SignalKind::Offer | SignalKind::Answer => (sdp, None),
                    SignalKind::Candidate => (None, candidate),
                };
                self.state.router.do_send(RelaySignal {
                    user: me.party.user.clone(),
                    device: me.device.id(),
                    reference: id,
                    call_id,
                    kind,
                    sdp,
                    candidate,
                });
            }
            ClientFrame::Auth { .. } | ClientFrame::Ping { .. } => {}
        }
    }

    fn invite(
        &mut self,
        id: ClientRef,
        to: String,
        media: Media,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let Some(me) = &self.me else { return };
        let callee_name = match people::username(&to) {
            Ok(name) if name == me.party.username => {
                let err = AppError::new(ErrorCode::CannotCallSelf, "you can't call yourself");
                return self.send_error(ctx, &id, &err);
            }
            Ok(name) => name,
            Err(err) => return self.send_error(ctx, &id, &err),
        };
        if self.inviting {
            let err = AppError::new(
                ErrorCode::AlreadyInCall,
                "an invite from this device is already on its way",
            );
            return self.send_error(ctx, &id, &err);
        }
        self.inviting = true;
        let state = self.state.clone();
        let caller_user = me.party.user.clone();
        // Two steps. The friendship check needs the database: spawned, so the socket keeps
        // delivering frames (a call's signals) meanwhile. Placing the call is the router's
        // alone and quick: waited for, so its `ack` still comes before the `call.ringing` it
        // causes.
        let check = async move { state.callable_friend(&caller_user, callee_name).await };
        ctx.spawn(check.into_actor(self).map(move |checked, session, ctx| {
            let callee = match checked {
                Ok(callee) => callee,
                Err(err) => {
                    session.inviting = false;
                    return session.send_error(ctx, &id, &err);
                }
            };
            let Some((caller, device)) = session
                .me
                .as_deref()
                .map(|me| (me.party.clone(), me.device.id()))
            else {
                session.inviting = false;
                return;
            };
            let place = session.state.router.send(PlaceCall {
                caller,
                device: Some(device),
                callee,
                media,
            });
            ctx.wait(place.into_actor(session).map(move |placed, session, ctx| {
                session.inviting = false;
                match placed.map_err(AppError::internal).and_then(|r| r) {
                    Ok(placed) => session.ack(ctx, &id, Some(&placed.call_id), Some(placed.merged)),
                    Err(err) => session.send_error(ctx, &id, &err),
                }
            }));
        }));
    }

    fn act(
        &mut self,
        id: ClientRef,
        call_id: CallId,
        action: CallAction,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let Some(me) = &self.me else { return };
        let accepting = action == CallAction::Accept;
        // An end is acknowledged once it is committed, which may take a while: the socket keeps
        // delivering frames meanwhile. Other actions answer at once and keep their order with
        // the frames the router sends (call.accepted before a resumed call's signals).
        let ending = matches!(
            action,
            CallAction::Hangup { .. }
                | CallAction::Reject { .. }
                | CallAction::Cancel
                | CallAction::End
        );
        let msg = ActOnCall {
            user: me.party.user.clone(),
            device: Some(me.device.id()),
            call_id: call_id.clone(),
            action,
        };
        let work = self.state.router.send(msg);
        let answer = work.into_actor(self).map(move |result, session, ctx| {
            match result.map_err(AppError::internal).and_then(|r| r) {
                // The callee's device gets no `call.accepted`: its call credential rides the ack.
                Ok(()) if accepting => {
                    if let (Some(reference), Some(me)) = (id.as_ref(), &session.me) {
                        let servers = session
                            .state
                            .ice
                            .servers(&me.party.user, Scope::Call(&call_id));
                        let ack = ServerFrame::Ack {
                            reference,
                            call_id: None,
                            merged: None,
                            ice_servers: Some(&servers),
                        };
                        session.send(ctx, ack);
                    }
                }
                Ok(()) => session.ack(ctx, &id, None, None),
                Err(err) => session.send_error(ctx, &id, &err),
            }
        });
        if ending {
            ctx.spawn(answer);
        } else {
            ctx.wait(answer);
        }
    }
}

/// A status message trimmed, empty meaning none, at most 140 characters and without control
/// characters (a friend's screen shows it as it is: no newlines, escapes or NULs in it).
pub fn status_message(message: Option<String>) -> Result<Option<String>, AppError> {
    let message = message
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty());
    if message
        .as_ref()
        .is_some_and(|m| m.chars().count() > MAX_STATUS_MESSAGE || m.chars().any(char::is_control))
    {
        return Err(AppError::new(
            ErrorCode::InvalidFrame,
            "status messages are at most 140 characters, without control characters",
        ));
    }
    Ok(message)
}

/// Reasons are free text from the client, stored in the call record: control characters
/// (newlines, and NUL, which a Postgres text column refuses, losing the record) become
/// spaces, the ends are trimmed, and at most 200 characters are kept. Nothing left is none.
pub fn clip(reason: Option<String>) -> Option<String> {
    let reason: String = reason?
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let reason: String = reason.trim().chars().take(MAX_REASON).collect();
    let reason = reason.trim_end();
    (!reason.is_empty()).then(|| reason.to_owned())
}

/// Characters of a reject or hang-up reason that are kept.
const MAX_REASON: usize = 200;

/// Offers and answers carry SDP that must parse; candidates carry a candidate.
pub fn validate_signal(
    kind: SignalKind,
    sdp: Option<&serde_json::value::RawValue>,
    has_candidate: bool,
) -> Result<(), AppError> {
    match kind {
        SignalKind::Offer | SignalKind::Answer => {
            let sdp = sdp.ok_or_else(|| {
                AppError::new(ErrorCode::InvalidFrame, "offers and answers need sdp")
            })?;
            // Relayed as the client's raw JSON once it parses; unescaped here to check it.
            let sdp: String = serde_json::from_str(sdp.get())
                .map_err(|_| AppError::new(ErrorCode::InvalidFrame, "sdp must be a string"))?;
            let mut reader = std::io::Cursor::new(sdp.as_bytes());
            webrtc::sdp::SessionDescription::unmarshal(&mut reader)
                .map(|_| ())
                .map_err(|e| {
                    AppError::new(
                        ErrorCode::InvalidSdp,
                        format!("the SDP does not parse: {e}"),
                    )
                })
        }
        SignalKind::Candidate if has_candidate => Ok(()),
        SignalKind::Candidate => Err(AppError::new(
            ErrorCode::InvalidFrame,
            "candidate frames need a candidate",
        )),
    }
}

impl Actor for UserSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        crate::metrics::get().sockets_open.inc();
        let config = &self.state.config;
        let auth_timeout = ctx.run_later(config.ws_auth_timeout, |session, ctx| {
            if session.me.is_none() {
                session.close(ctx, close::AUTH_TIMEOUT, "authentication timeout");
            }
        });
        if let Some(arrival) = self.arrival.as_mut() {
            arrival.auth_timeout = Some(auth_timeout);
        }
        let timeout = config.heartbeat_timeout;
        ctx.run_interval(config.heartbeat_interval, move |session, ctx| {
            // Silent, or sending but not reading (its pings go unanswered).
            let now = Instant::now();
            let stuck = traffic::stuck_for(session.traffic.as_deref(), now);
            if session.last_heard.elapsed() > timeout || stuck > timeout {
                session.close(ctx, close::HEARTBEAT_TIMEOUT, "heartbeat timeout");
            } else {
                let payload = session.traffic().backlog.ping(now);
                ctx.ping(&payload);
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        crate::metrics::get().socket_closed(self.me.is_some());
        let registered = self
            .me
            .take()
            .map(|me| (me.party.user, me.device.id()))
            .or_else(|| self.arrival.as_ref().and_then(|a| a.registering.take()));
        if let Some((user, device)) = registered {
            self.state.presence.do_send(Disconnect {
                user: user.clone(),
                device,
            });
            self.state.router.do_send(Detach {
                user,
                device,
                revoked: self.revoked,
            });
        }
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for UserSession {
    fn handle(&mut self, item: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        let message = match item {
            Ok(message) => message,
            Err(ProtocolError::Overflow) => return self.close_oversized(ctx),
            Err(e) if frame_guard::cut_oversized(&e) => return self.close_oversized(ctx),
            Err(e) => {
                log::debug!("websocket protocol error: {e}");
                return self.close(ctx, u16::from(CloseCode::Protocol), "protocol error");
            }
        };
        self.last_heard = Instant::now();
        match message {
            ws::Message::Text(text) => {
                let traffic = traffic::get(&mut self.traffic, self.state.config.ws_max_frame_rate);
                if !traffic.budget.take() {
                    return self.close(
                        ctx,
                        u16::from(CloseCode::Policy),
                        "too many frames per second",
                    );
                }
                let user_spent = match &self.me {
                    Some(me) => {
                        let budget = traffic
                            .user_budget
                            .get_or_insert_with(|| me.user_budgets.of(&me.party.user));
                        !budget.lock().unwrap_or_else(|p| p.into_inner()).take()
                    }
                    None => false,
                };
                if user_spent {
                    return self.close(
                        ctx,
                        u16::from(CloseCode::Policy),
                        "too many frames per second from this account",
                    );
                }
                self.on_text(&text, ctx);
            }
            ws::Message::Binary(_) => self.close(
                ctx,
                u16::from(CloseCode::Unsupported),
                "binary frames are not supported",
            ),
            ws::Message::Continuation(_) => self.close(
                ctx,
                u16::from(CloseCode::Unsupported),
                "fragmented frames are not supported",
            ),
            ws::Message::Ping(payload) => ctx.pong(&payload),
            ws::Message::Pong(payload) => {
                if let Some(traffic) = self.traffic.as_mut() {
                    traffic.backlog.pong(&payload);
                    if traffic.settled() {
                        self.traffic = None;
                    }
                }
            }
            ws::Message::Nop => {}
            ws::Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
        }
    }
}

impl Handler<ToDevice> for UserSession {
    type Result = ();

    fn handle(&mut self, message: ToDevice, ctx: &mut Self::Context) {
        match message {
            ToDevice::Frame(frame) => {
                if let Some(me) = &self.me {
                    me.device.taken(frame.len());
                }
                self.text(ctx, frame);
            }
            ToDevice::Close(kick) => {
                self.revoked |= kick.code == close::REVOKED;
                self.close(ctx, kick.code, kick.reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_loses_control_characters_and_its_ends_before_it_is_cut() {
        let padded = format!("{}\n{}", " ".repeat(300), "x".repeat(250));
        assert_eq!(clip(Some(padded)), Some("x".repeat(MAX_REASON)));
        assert_eq!(
            clip(Some("line one\nline\0two ".into())),
            Some("line one line two".into())
        );
        assert_eq!(clip(Some(" \t\r\n ".into())), None);
        assert_eq!(clip(None), None);
    }

    #[test]
    fn the_session_actor_stays_within_its_size() {
        let size = std::mem::size_of::<UserSession>();
        assert!(size <= SESSION_SIZE, "{size} bytes");
    }
}
