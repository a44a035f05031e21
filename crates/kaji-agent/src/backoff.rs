//! CrashLoopBackOff: how long a container that keeps failing waits before
//! its next restart — nothing the first time, then 10s doubling up to five
//! minutes, forgotten after the container stays up twice that long (as
//! kubelet's per-container back-off).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Back-off bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    /// When the exit that set `delay` happened.
    last_exit: DateTime<Utc>,
}

/// Per-container back-off state of one pod.
#[derive(Debug, Default)]
pub struct CrashBackoff {
    policy: BackoffPolicy,
    entries: HashMap<String, Entry>,
}

/// Whether a failed container may restart now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Restart it now.
    Restart,
    /// Wait: the current delay and how much of it is left.
    Wait {
        /// The delay in force (shown in the waiting message).
        delay: Duration,
        /// Time left before it may restart.
        left: Duration,
    },
}

impl CrashBackoff {
    /// Back-off state using `policy`.
    pub fn new(policy: BackoffPolicy) -> Self {
        CrashBackoff {
            policy,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, entry: &Entry, exit: DateTime<Utc>) -> bool {
        let since = (exit - entry.last_exit).to_std().unwrap_or_default();
        since > self.policy.max * 2
    }

    /// Whether `container`, which exited at `finished`, may restart at `now`.
    pub fn check(&self, container: &str, finished: DateTime<Utc>, now: DateTime<Utc>) -> Verdict {
        let Some(entry) = self.entries.get(container) else {
            return Verdict::Restart;
        };
        if self.expired(entry, finished) {
            return Verdict::Restart;
        }
        let elapsed = (now - finished).to_std().unwrap_or_default();
        if elapsed < entry.delay {
            Verdict::Wait {
                delay: entry.delay,
                left: entry.delay - elapsed,
            }
        } else {
            Verdict::Restart
        }
    }

    /// Records that `container`, which exited at `finished`, is restarted now:
    /// the next failure waits longer.
    pub fn restarted(&mut self, container: &str, finished: DateTime<Utc>) {
        let delay = match self.entries.get(container) {
            Some(e) if !self.expired(e, finished) => (e.delay * 2).min(self.policy.max),
            _ => self.policy.initial,
        };
        self.entries.insert(
            container.to_string(),
            Entry {
                delay,
                last_exit: finished,
            },
        );
    }
}

/// A duration as Go prints it in kubelet's messages (`10s`, `1m20s`, `5m0s`).
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{}h{}m{}s", secs / 3600, secs % 3600 / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_first_failure_restarts_at_once_then_delays_double_to_the_cap() {
        let mut b = CrashBackoff::new(BackoffPolicy::default());
        assert_eq!(b.check("c", at(0), at(0)), Verdict::Restart);
        b.restarted("c", at(0));
        let mut exit = 1;
        let mut delays = Vec::new();
        for _ in 0..7 {
            match b.check("c", at(exit), at(exit + 1)) {
                Verdict::Wait { delay, .. } => delays.push(delay.as_secs()),
                Verdict::Restart => panic!("should wait"),
            }
            let d = i64::try_from(delays.last().copied().unwrap()).unwrap();
            assert_eq!(b.check("c", at(exit), at(exit + d)), Verdict::Restart);
            b.restarted("c", at(exit));
            exit += d + 1;
        }
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn a_container_that_stayed_up_long_starts_over_at_the_initial_delay() {
        let mut b = CrashBackoff::new(BackoffPolicy::default());
        b.restarted("c", at(0));
        b.restarted("c", at(5));
        assert_eq!(b.check("c", at(1000), at(1000)), Verdict::Restart);
        b.restarted("c", at(1000));
        assert_eq!(
            b.check("c", at(1001), at(1001)),
            Verdict::Wait {
                delay: Duration::from_secs(10),
                left: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }
}
