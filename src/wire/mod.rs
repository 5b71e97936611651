//! The realtime vocabulary every layer above shares: the frames of the WebSocket protocol, the
//! handles through which actors reach a device, and the socket close codes. It depends on
//! nothing realtime itself, so the socket edge and the hubs both build on it.
pub mod close;
pub mod device;
pub mod protocol;
