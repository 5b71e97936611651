//! What the long-lived actors hold, written to the log: each actor counts its entries (users
//! online, devices, calls) every [`EVERY`] and logs a line when the counts changed. An operator
//! (or the bench's soak) reads there that everything a departed client held is gone.
use std::time::Duration;

/// How often an actor counts what it holds.
pub const EVERY: Duration = Duration::from_secs(10);

/// The counts an actor last logged.
pub struct Census<const N: usize> {
    last: Option<[usize; N]>,
}

impl<const N: usize> Default for Census<N> {
    fn default() -> Self {
        Self { last: None }
    }
}

impl<const N: usize> Census<N> {
    /// Logs `who: count name, count name` if any count differs from the last line's.
    pub fn report(&mut self, who: &str, counts: [(&str, usize); N]) {
        let now = counts.map(|(_, n)| n);
        if self.last == Some(now) {
            return;
        }
        self.last = Some(now);
        let parts: Vec<String> = counts
            .iter()
            .map(|(name, n)| format!("{n} {name}"))
            .collect();
        log::info!("census: {who}: {}", parts.join(", "));
    }
}
