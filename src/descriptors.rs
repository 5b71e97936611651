//! File descriptors: every socket, relay allocation and database connection takes one. At
//! start the broker raises its soft limit to the hard limit, and keeps a quarter of it (at
//! least [`RESERVED`]) out of reach of incoming connections, so that when clients use up their
//! share, new connections wait in the listen backlog while existing users, relay allocations
//! and the database keep getting descriptors; accepting resumes as connections close.
/// Descriptors never given to incoming connections, at the least.
pub const RESERVED: u64 = 64;

/// The descriptor limits after raising: (soft, hard).
pub fn raise_limit() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return (0, 0);
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    (limit.rlim_cur, limit.rlim_max)
}

/// How many connections each of `workers` HTTP workers may hold for a soft limit of `soft`.
pub fn connections_per_worker(soft: u64, workers: usize) -> usize {
    let reserved = (soft / 4).max(RESERVED);
    let for_connections = soft.saturating_sub(reserved).max(workers as u64);
    usize::try_from(for_connections / workers.max(1) as u64).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_a_quarter_of_the_limit_free() {
        assert_eq!(connections_per_worker(1_048_576, 2), 393_216);
        assert_eq!(connections_per_worker(256, 2), 96);
        assert_eq!(connections_per_worker(100, 2), 18);
        assert_eq!(connections_per_worker(10, 2), 1);
    }
}
