//! The one retry policy of every commit loop: the kernel retries nothing,
//! and the flush's commits (`delta.rs`) and compaction's swap
//! (`maintenance/compaction.rs`) try again by these rules.
//!
//! - A race lost to another writer is tried again at once, on a fresh
//!   snapshot (where the fencing check runs again), up to
//!   [`MAX_LOST_RACES`] in a row. No pause: the winner's version is already
//!   in the log, and a pause only lets the next writer win too.
//! - A commit the store could not confirm is tried again after a back-off
//!   that doubles from [`FIRST_BACKOFF`], with jitter so that writers that
//!   failed together do not retry together, up to [`MAX_UNCONFIRMED`]
//!   times.

use std::time::Duration;

use crate::Error;

/// Races lost in a row before a commit is given up. Workers commit every
/// few seconds each; at 200 a table would have to take a commit from
/// others every few milliseconds for minutes (docs/scaling.md measures
/// where races start).
pub(crate) const MAX_LOST_RACES: u32 = 200;
/// Unconfirmed attempts before the store's error is returned.
pub(crate) const MAX_UNCONFIRMED: u32 = 5;
/// The back-off after the first unconfirmed attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// The attempts of one commit so far.
#[derive(Debug)]
pub(crate) struct CommitRetries {
    table: String,
    lost_races: u32,
    unconfirmed: u32,
}

impl CommitRetries {
    /// A new commit to `table` (named in errors).
    pub(crate) fn new(table: &url::Url) -> Self {
        CommitRetries {
            table: table.to_string(),
            lost_races: 0,
            unconfirmed: 0,
        }
    }

    /// A race was lost: try again at once, or give up once there were too
    /// many in a row.
    pub(crate) fn lost_race(&mut self) -> Result<(), Error> {
        self.lost_races += 1;
        if self.lost_races >= MAX_LOST_RACES {
            return Err(Error::LostRaces {
                table: self.table.clone(),
                races: self.lost_races,
            });
        }
        Ok(())
    }

    /// The store could not confirm the commit (`error`): waits the
    /// back-off and says to try again, or gives the error back once the
    /// attempts are spent.
    pub(crate) fn unconfirmed(
        &mut self,
        context: &str,
        error: delta_kernel::KernelError,
    ) -> Result<(), Error> {
        self.unconfirmed += 1;
        if self.unconfirmed >= MAX_UNCONFIRMED {
            return Err(Error::Delta {
                context: format!("{context} {}", self.table),
                source: error.into(),
            });
        }
        std::thread::sleep(backoff(self.unconfirmed));
        Ok(())
    }
}

/// The pause before unconfirmed attempt `attempt + 1`: doubling from
/// [`FIRST_BACKOFF`], each between 75 % and 125 % of that.
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1));
    // Jitter from the clock's nanoseconds: spread, not secret.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut rng = newsflow_core::SplitMix64::new(u64::from(nanos));
    let quarter = base / 4;
    base - quarter + quarter * 2 * (rng.below(1000) as u32) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_races_give_up_at_the_limit_naming_the_table() {
        let mut retries = CommitRetries::new(&url::Url::parse("file:///lake/events/").unwrap());
        for _ in 1..MAX_LOST_RACES {
            retries.lost_race().unwrap();
        }
        let error = retries.lost_race().unwrap_err();
        assert!(error.is_transient());
        assert_eq!(
            error.to_string(),
            format!("lake: file:///lake/events/: lost {MAX_LOST_RACES} commit races in a row")
        );
    }

    #[test]
    fn the_backoff_doubles_within_its_jitter() {
        for attempt in 1..MAX_UNCONFIRMED {
            let base = FIRST_BACKOFF * 2u32.pow(attempt - 1);
            let pause = backoff(attempt);
            assert!(pause >= base * 3 / 4 && pause <= base * 5 / 4, "{pause:?}");
        }
    }
}
