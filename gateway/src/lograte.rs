//! Rate limiting for log lines a peer can cause (refused logins, protocol errors): a hostile
//! or broken initiator retrying in a loop must not flood the log, yet the first lines, and a
//! count of what was dropped, are always there.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Peer-caused lines let through per window, per thread.
pub const LINES_PER_WINDOW_MAX: u32 = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(1);

/// One thread's limiter (not shared: each thread logs about its own peers).
#[derive(Debug)]
pub struct LogLimiter {
    window_start: Cell<Instant>,
    lines: Cell<u32>,
    suppressed: Cell<u64>,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter {
            window_start: Cell::new(Instant::now()),
            lines: Cell::new(0),
            suppressed: Cell::new(0),
        }
    }
}

impl LogLimiter {
    /// Whether one more peer-caused line may be logged now. When a window ends with lines
    /// dropped, says how many.
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        if now.duration_since(self.window_start.get()) >= WINDOW {
            let dropped = self.suppressed.replace(0);
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "log lines about peers were dropped (more than {LINES_PER_WINDOW_MAX} in {WINDOW:?})"
                );
            }
            self.window_start.set(now);
            self.lines.set(0);
        }
        let n = self.lines.get() + 1;
        self.lines.set(n);
        if n <= LINES_PER_WINDOW_MAX {
            true
        } else {
            self.suppressed.set(self.suppressed.get() + 1);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_cut_and_the_next_window_opens_again() {
        let l = LogLimiter::default();
        let t0 = Instant::now();
        let let_through = (0..100).filter(|_| l.allow_at(t0)).count();
        assert_eq!(let_through, LINES_PER_WINDOW_MAX as usize);
        assert_eq!(l.suppressed.get(), 100 - u64::from(LINES_PER_WINDOW_MAX));
        assert!(l.allow_at(t0 + WINDOW));
        assert_eq!(l.suppressed.get(), 0);
    }
}
