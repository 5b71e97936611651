//! How much the relay answers strangers: requests without valid credentials (challenges, stale
//! nonces, refusals, binding requests) draw from a token bucket per source IP and from one for
//! the whole relay; with both empty they are dropped unanswered, so the relay can't be used to
//! flood a spoofed address. The per-source table is bounded: when it is full, sources idle long
//! enough to have refilled are forgotten, and if none are, new sources share one overflow bucket.
//! Also: refusals are logged at warn, but at most once a second with a count of the rest.
use std::collections::HashMap;
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

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    fn take(&mut self, burst: f64, rate: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether it would be full again by `now` (so forgetting it changes nothing).
    fn refilled(&self, burst: f64, rate: f64, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate >= burst
    }
}

pub struct Throttle {
    sources: HashMap<IpAddr, Bucket>,
    overflow: Bucket,
    global: Bucket,
}

impl Throttle {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            sources: HashMap::new(),
            overflow: Bucket::full(SOURCE_BURST, now),
            global: Bucket::full(GLOBAL_BURST, now),
        }
    }

    /// Whether an answer to a stranger's request from `source` may go out now.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        let bucket = match self.sources.get_mut(&source) {
            Some(bucket) => bucket,
            None => {
                if self.sources.len() >= MAX_SOURCES {
                    self.sources
                        .retain(|_, b| !b.refilled(SOURCE_BURST, SOURCE_RATE, now));
                }
                if self.sources.len() >= MAX_SOURCES {
                    &mut self.overflow
                } else {
                    self.sources
                        .entry(source)
                        .or_insert_with(|| Bucket::full(SOURCE_BURST, now))
                }
            }
        };
        bucket.take(SOURCE_BURST, SOURCE_RATE, now)
            && self.global.take(GLOBAL_BURST, GLOBAL_RATE, now)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.len()
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
