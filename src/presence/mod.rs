//! Presence: who is online, with what status, and telling their friends.
pub mod hub;
