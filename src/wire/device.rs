//! What actors hold for a connected device: recipients for the two messages a session accepts
//! from outside. Hubs depend on these, never on the concrete session actor.
//!
//! Frames for a device wait in its session's mailbox until the session writes them out, and a
//! session whose client does not read stops being run at all once its socket is full. So the
//! handle counts the bytes it has queued that the session has not taken yet: past
//! [`MAX_QUEUED`] the device is *stuck*, further frames are dropped, and it is told to close;
//! the router and the presence hub treat a stuck device as one that left (its call enters the
//! reconnect grace, its user goes offline after the presence grace if it was the last one).
use crate::ids::DeviceId;
use crate::wire::close;
use actix::prelude::*;
use bytestring::ByteString;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes queued for one device that its session has not written out yet.
pub const MAX_QUEUED: usize = 1024 * 1024;

/// A frame, already encoded, to write to the device's socket.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver(pub ByteString);

/// Close the socket with this close code (see [`super::close`]) and reason.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
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
    deliver: Recipient<Deliver>,
    kick: Recipient<Kick>,
    /// Bytes queued for the device that its session has not written out yet.
    queued: AtomicUsize,
    stuck: AtomicBool,
}

impl DeviceHandle {
    pub fn new(id: DeviceId, deliver: Recipient<Deliver>, kick: Recipient<Kick>) -> Self {
        Self(Arc::new(Device {
            id,
            deliver,
            kick,
            queued: AtomicUsize::new(0),
            stuck: AtomicBool::new(false),
        }))
    }

    pub fn id(&self) -> DeviceId {
        self.0.id
    }

    /// Queues `frame` for the device; `false` once it is stuck (the frame is dropped).
    pub fn send(&self, frame: ByteString) -> bool {
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
        device.deliver.do_send(Deliver(frame));
        true
    }

    /// The session wrote out a frame of `bytes`.
    pub fn taken(&self, bytes: usize) {
        self.0.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Tells the session to close its socket.
    pub fn kick(&self, kick: Kick) {
        self.0.kick.do_send(kick);
    }
}
