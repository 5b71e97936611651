//! Calls: the pure ring/accept/end state machine, the router actor that runs it, and the
//! recorder that persists every call as it happens.
pub mod metrics;
pub mod recorder;
pub mod router;
pub mod state;
