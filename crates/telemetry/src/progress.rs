//! Progress lines for long runs. Both binaries log one every so often,
//! with the rate since the previous line and since the start; this keeps
//! the timing and the arithmetic in one place, and each caller logs its
//! own fields.

use std::time::{Duration, Instant};

/// Says when a progress line is due, and the rates to put in it.
pub struct Progress {
    every: Duration,
    started: Instant,
    last: Instant,
    count_at_last: u64,
}

/// Rates of a counter, in events per second.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    /// Since the previous progress line.
    pub recent: f64,
    /// Since the start.
    pub overall: f64,
}

impl Progress {
    /// A line at most every `every`, counting from now.
    pub fn new(every: Duration) -> Self {
        let now = Instant::now();
        Progress {
            every,
            started: now,
            last: now,
            count_at_last: 0,
        }
    }

    /// The rates for `count` so far when a line is due, `None` otherwise.
    pub fn due(&mut self, count: u64) -> Option<Rates> {
        let since_last = self.last.elapsed();
        if since_last < self.every {
            return None;
        }
        let recent = count.saturating_sub(self.count_at_last) as f64 / since_last.as_secs_f64();
        self.last = Instant::now();
        self.count_at_last = count;
        Some(Rates {
            recent,
            overall: self.overall(count),
        })
    }

    /// `count` over the whole run so far, per second.
    pub fn overall(&self, count: u64) -> f64 {
        count as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A rate as a log field: `12345/s`.
pub fn per_second(rate: f64) -> String {
    format!("{rate:.0}/s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_due_once_per_interval_with_the_rate_since_the_last() {
        let mut progress = Progress::new(Duration::from_millis(50));
        assert!(progress.due(10).is_none());
        std::thread::sleep(Duration::from_millis(60));
        let rates = progress.due(100).expect("due after the interval");
        assert!(rates.recent > 0.0 && rates.overall > 0.0);
        assert!(
            progress.due(200).is_none(),
            "not again before the next interval"
        );
        assert_eq!(per_second(1234.4), "1234/s");
    }
}
