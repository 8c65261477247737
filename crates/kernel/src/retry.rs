//! Retrying a write while a dependency is down: a doubling pause, for a bounded time.

use std::time::{Duration, Instant};

/// The pauses between tries of an operation that fails while a dependency is down (the
/// database, the ledger): each twice the last, from `first` up to `max`, as long as the next
/// try still starts within `retry_for` of the first.
#[derive(Debug, Clone)]
pub struct Backoff {
    deadline: Instant,
    pause: Duration,
    max: Duration,
    tries: u32,
}

impl Backoff {
    /// Tries from now, for `retry_for`.
    #[must_use]
    pub fn new(retry_for: Duration, first: Duration, max: Duration) -> Self {
        Self {
            deadline: Instant::now() + retry_for,
            pause: first,
            max,
            tries: 1,
        }
    }

    /// The pause before the next try, or `None` when that try would start past the bound
    /// (give up then).
    pub fn next_pause(&mut self) -> Option<Duration> {
        let pause = self.pause;
        if Instant::now() + pause >= self.deadline {
            return None;
        }
        self.pause = (pause * 2).min(self.max);
        self.tries += 1;
        Some(pause)
    }

    /// Tries so far, the one under way included.
    #[must_use]
    pub const fn tries(&self) -> u32 {
        self.tries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_stop_at_the_bound() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(Duration::from_secs(60), ms(50), ms(300));
        let pauses: Vec<_> = (0..5).filter_map(|_| b.next_pause()).collect();
        assert_eq!(pauses, [ms(50), ms(100), ms(200), ms(300), ms(300)]);
        assert_eq!(b.tries(), 6);
        let mut none = Backoff::new(ms(10), ms(50), ms(300));
        assert_eq!(none.next_pause(), None, "past the bound: give up");
        assert_eq!(none.tries(), 1);
    }
}
