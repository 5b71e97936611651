//! What actors hold for a connected device: a recipient for the one message a session accepts
//! from outside, a frame to write or an order to close. Hubs depend on this, never on the
//! concrete session actor.
//!
//! The recipient is weak. A strong one is a sender of the session's mailbox with allocations of
//! its own (~112 bytes held for the socket's life); a weak one is a pointer, upgraded for each
//! message (a few small allocations per frame, next to the frame's own). The session does not
//! need senders to live: its socket's stream keeps it running, as in a bare actix-web-actors
//! socket; once it has stopped, upgrading fails and the message is dropped, as a send to a
//! stopped actor would be.
//!
//! Frames for a device wait in its session's mailbox until the session writes them out, and a
//! session whose client does not read stops being run at all once its socket is full. So the
//! handle counts the bytes it has queued that the session has not taken yet: past
//! [`MAX_QUEUED`] the device is *stuck*, further frames are dropped, and it is told to close;
//! the router and the presence hub treat a stuck device as one that left (its call enters the
//! reconnect grace, its user goes offline after the presence grace if it was the last one).
use crate::auth::token::HashKey;
use crate::ids::DeviceId;
use crate::wire::close;
use actix::prelude::*;
use actix::WeakRecipient;
use bytestring::ByteString;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes queued for one device that its session has not written out yet.
pub const MAX_QUEUED: usize = 1024 * 1024;

/// What the hubs send a device's session. One message type, so a device is one recipient:
/// each recipient of an actor is its own sender with its own allocations, held for as long as
/// the socket lives.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum ToDevice {
    /// A frame, already encoded, to write to the socket.
    Frame(ByteString),
    /// Close the socket.
    Close(Kick),
}

/// Close the socket with this close code (see [`super::close`]) and reason.
#[derive(Debug, Clone, Copy)]
pub struct Kick {
    pub code: u16,
    pub reason: &'static str,
}

/// A connected device as the hubs see it. One allocation, shared by the session, the presence
/// hub and the call router: cloning a handle only counts a reference.
#[derive(Clone)]
pub struct DeviceHandle(Arc<Device>);

struct Device {
    id: DeviceId,
    /// The session the device authenticated with, by its token hash's key: the hub closes the
    /// devices of revoked sessions, and push skips sessions that have a device connected.
    session_key: HashKey,
    session: WeakRecipient<ToDevice>,
    /// Bytes queued for the device that its session has not written out yet.
    queued: AtomicUsize,
    stuck: AtomicBool,
}

impl Device {
    fn deliver(&self, message: ToDevice) {
        if let Some(session) = self.session.upgrade() {
            session.do_send(message);
        }
    }
}

impl DeviceHandle {
    pub fn new(id: DeviceId, session_key: HashKey, session: WeakRecipient<ToDevice>) -> Self {
        Self(Arc::new(Device {
            id,
            session_key,
            session,
            queued: AtomicUsize::new(0),
            stuck: AtomicBool::new(false),
        }))
    }

    pub fn id(&self) -> DeviceId {
        self.0.id
    }

    /// The key of the token hash of the session the device authenticated with.
    pub fn session_key(&self) -> &HashKey {
        &self.0.session_key
    }

    /// The device with its session held strongly, for as long as the result is kept.
    pub fn live(&self) -> Option<LiveDevice> {
        let session = self.0.session.upgrade()?;
        Some(LiveDevice {
            handle: self.clone(),
            session,
        })
    }

    /// Queues `frame` for the device; `false` once it is stuck (the frame is dropped).
    pub fn send(&self, frame: ByteString) -> bool {
        self.queue(frame, |message| self.0.deliver(message))
    }

    /// Counts `frame` against the device's queue and hands it to `deliver`, unless the device
    /// is stuck or this frame makes it so.
    fn queue(&self, frame: ByteString, deliver: impl FnOnce(ToDevice)) -> bool {
        let device = &*self.0;
        if device.stuck.load(Ordering::Relaxed) {
            return false;
        }
        let queued = &device.queued;
        if queued.fetch_add(frame.len(), Ordering::Relaxed) + frame.len() > MAX_QUEUED {
            queued.fetch_sub(frame.len(), Ordering::Relaxed);
            device.stuck.store(true, Ordering::Relaxed);
            self.kick(Kick {
                code: close::NOT_READING,
                reason: "not reading what it is sent",
            });
            return false;
        }
        deliver(ToDevice::Frame(frame));
        true
    }

    /// The session wrote out a frame of `bytes`.
    pub fn taken(&self, bytes: usize) {
        self.0.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Tells the session to close its socket.
    pub fn kick(&self, kick: Kick) {
        self.0.deliver(ToDevice::Close(kick));
    }
}

/// A device whose session is held strongly. The router keeps one for each device of a call
/// while the call lives: every signal to a device through its handle would upgrade the weak
/// recipient (three small allocations per frame). It holds a mailbox sender, which keeps
/// nothing alive: a stopped session's mailbox refuses what is sent.
pub struct LiveDevice {
    handle: DeviceHandle,
    session: Recipient<ToDevice>,
}

impl LiveDevice {
    pub fn id(&self) -> DeviceId {
        self.handle.id()
    }

    /// As [`DeviceHandle::send`].
    pub fn send(&self, frame: ByteString) -> bool {
        self.handle
            .queue(frame, |message| self.session.do_send(message))
    }
}
