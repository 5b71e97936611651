//! What actors hold for a connected device: recipients for the two messages a session accepts
//! from outside. Hubs depend on these, never on the concrete session actor.
use crate::ids::DeviceId;
use actix::prelude::*;
use bytestring::ByteString;

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

#[derive(Clone)]
pub struct DeviceHandle {
    pub id: DeviceId,
    pub deliver: Recipient<Deliver>,
    pub kick: Recipient<Kick>,
}

impl DeviceHandle {
    pub fn send(&self, frame: ByteString) {
        self.deliver.do_send(Deliver(frame));
    }
}
