//! How much the relay answers strangers: requests without valid credentials (challenges, stale
//! nonces, refusals, binding requests) draw from a token bucket per source IP and from one for
//! the whole relay; with either empty they are dropped unanswered, so the relay can't be used to
//! flood a spoofed address. The per-source table is bounded (see [`Buckets`]).
//! Also: refusals are logged at warn, but at most once a second with a count of the rest.
use crate::rate_limit::{Bucket, Buckets};
use std::net::IpAddr;
use std::time::Instant;

/// Per source IP: a burst of this many, refilled at this rate per second. A browser's ICE
/// gathering and first allocation take a handful; an office behind one NAT address, more.
const SOURCE_BURST: f64 = 64.0;
const SOURCE_RATE: f64 = 32.0;
/// For the whole relay.
const GLOBAL_BURST: f64 = 2_000.0;
const GLOBAL_RATE: f64 = 1_000.0;
/// Sources tracked at once (about 40 bytes each).
const MAX_SOURCES: usize = 16_384;

pub struct Throttle {
    sources: Buckets<IpAddr>,
    global: Bucket,
}

impl Throttle {
    pub fn new() -> Self {
        Self {
            sources: Buckets::new(SOURCE_BURST, SOURCE_RATE, MAX_SOURCES),
            global: Bucket::new(GLOBAL_BURST, GLOBAL_RATE, Instant::now()),
        }
    }

    /// Whether an answer to a stranger's request from `source` may go out now.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        self.sources.take(source, now).is_ok() && self.global.take(now)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.tracked()
    }
}

/// Warn lines at most once a second; the ones held back are counted into the next.
pub struct WarnLimiter {
    last: Option<Instant>,
    held_back: u64,
}

impl WarnLimiter {
    pub fn new() -> Self {
        Self {
            last: None,
            held_back: 0,
        }
    }

    pub fn warn(&mut self, now: Instant, line: impl FnOnce() -> String) {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last).as_secs() < 1)
        {
            self.held_back += 1;
            return;
        }
        self.last = Some(now);
        if self.held_back > 0 {
            log::warn!("{} ({} similar lines held back)", line(), self.held_back);
            self.held_back = 0;
        } else {
            log::warn!("{}", line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut throttle = Throttle::new();
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        let now = Instant::now();
        let admitted = (0..100).filter(|_| throttle.admit(ip, now)).count();
        assert_eq!(admitted, SOURCE_BURST as usize);
        let later = now + Duration::from_millis(500);
        let refilled = (0..100).filter(|_| throttle.admit(ip, later)).count();
        assert_eq!(refilled, (SOURCE_RATE / 2.0) as usize);
        let other: IpAddr = "198.51.100.2".parse().expect("ip");
        assert!(
            throttle.admit(other, later),
            "another source has its own bucket"
        );
    }

    #[test]
    fn many_sources_stay_within_the_table_and_the_global_bucket() {
        let mut throttle = Throttle::new();
        let now = Instant::now();
        let mut admitted = 0;
        for i in 0..(MAX_SOURCES as u32 * 2) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            admitted += usize::from(throttle.admit(ip, now));
        }
        assert!(throttle.tracked() <= MAX_SOURCES);
        assert_eq!(admitted, GLOBAL_BURST as usize);
    }
}
