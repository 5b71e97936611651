//! How much a socket has been sent that its client has not read yet. A WebSocket has no read
//! receipts, but pongs are one: a client answers a ping only after reading everything sent
//! before it. So every ping carries a sequence number, and the bytes sent before it count as
//! read once its pong comes back. Pings go out on the heartbeat interval and also after every
//! [`PING_EVERY_BYTES`] sent, so a client that keeps reading keeps its backlog small however
//! much it receives, while one that stops reading (or reads slower than its frames arrive) is
//! seen to fall behind, and closed before the broker buffers more than [`MAX_UNREAD`] for it.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes sent after which the next ping goes out, whatever the interval.
pub const PING_EVERY_BYTES: u64 = 256 * 1024;
/// Bytes a client may be behind before its socket is closed.
pub const MAX_UNREAD: u64 = 1024 * 1024;
/// Pings awaiting their pong; past this, no more are sent until one comes back.
const MAX_PINGS: usize = 16;

#[derive(Default)]
pub struct Backlog {
    sent: u64,
    read: u64,
    since_ping: u64,
    next_seq: u64,
    /// Pings not answered yet, oldest first: sequence number, bytes sent before it, when.
    pings: VecDeque<(u64, u64, Instant)>,
}

impl Backlog {
    /// `bytes` were just sent; a ping payload when one should follow them. The clock is read
    /// only then, not for every frame.
    pub fn sent(&mut self, bytes: usize) -> Option<[u8; 8]> {
        self.sent += bytes as u64;
        self.since_ping += bytes as u64;
        (self.since_ping >= PING_EVERY_BYTES && self.pings.len() < MAX_PINGS)
            .then(|| self.ping(Instant::now()))
    }

    /// A ping's payload, to send now.
    pub fn ping(&mut self, now: Instant) -> [u8; 8] {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.since_ping = 0;
        if self.pings.len() == MAX_PINGS {
            // Keep the oldest: it says how long the client has been stuck.
            self.pings.remove(1);
        }
        self.pings.push_back((seq, self.sent, now));
        seq.to_be_bytes()
    }

    /// A pong came back: what was sent before its ping has been read.
    pub fn pong(&mut self, payload: &[u8]) {
        let Ok(seq) = <[u8; 8]>::try_from(payload).map(u64::from_be_bytes) else {
            return;
        };
        while let Some(&(oldest, sent_before, _)) = self.pings.front() {
            if oldest > seq {
                break;
            }
            self.pings.pop_front();
            if oldest == seq {
                self.read = self.read.max(sent_before);
            }
        }
        // An idle socket has no ping out between heartbeats: hold no buffer for it meanwhile.
        if self.pings.is_empty() {
            self.pings = VecDeque::new();
        }
    }

    /// Whether the client has shown it read everything and no ping is out: a new backlog would
    /// be the same.
    pub fn settled(&self) -> bool {
        self.unread() == 0 && self.pings.is_empty()
    }

    /// Bytes sent that the client has not shown it read.
    pub fn unread(&self) -> u64 {
        self.sent - self.read
    }

    /// How long the oldest unanswered ping has waited.
    pub fn stuck_for(&self, now: Instant) -> Duration {
        self.pings.front().map_or(Duration::ZERO, |&(_, _, at)| {
            now.saturating_duration_since(at)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_client_keeps_up_and_a_silent_one_falls_behind() {
        let mut reader = Backlog::default();
        let mut silent = Backlog::default();
        for _ in 0..100 {
            if let Some(ping) = reader.sent(60_000) {
                reader.pong(&ping);
            }
            silent.sent(60_000);
        }
        assert!(
            reader.unread() < PING_EVERY_BYTES + 60_000,
            "{}",
            reader.unread()
        );
        assert_eq!(silent.unread(), 6_000_000);
        assert!(silent.unread() > MAX_UNREAD);
        let later = Instant::now() + Duration::from_secs(5);
        let stuck = silent.stuck_for(later);
        assert!(
            stuck >= Duration::from_secs(5) && stuck < Duration::from_millis(5100),
            "{stuck:?}"
        );
        assert_eq!(reader.stuck_for(later), Duration::ZERO);
    }

    #[test]
    fn an_old_pong_acknowledges_only_what_came_before_its_ping() {
        let now = Instant::now();
        let mut backlog = Backlog::default();
        backlog.sent(100);
        let first = backlog.ping(now);
        backlog.sent(200);
        let _second = backlog.ping(now);
        backlog.pong(&first);
        assert_eq!(backlog.unread(), 200);
        backlog.pong(b"junk");
        assert_eq!(backlog.unread(), 200);
    }
}
