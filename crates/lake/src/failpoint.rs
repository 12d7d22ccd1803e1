//! Faults the end-to-end tests inject through `NEWSFLOW_FAILPOINT`, to put
//! the flush protocol's crash points and races under test. Never set in
//! production; a worker that has one logs it at start-up.

use std::time::Duration;

use crate::datasets::Dataset;

/// One injected fault.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Failpoint {
    /// `crash_after_commit:<table>`: abort the process right after the
    /// first commit to that table, leaving the tables committed after it
    /// without that flush.
    CrashAfterCommit(Dataset),
    /// `stall_before_commit:<ms>`: wait before every flush's first commit,
    /// so that a freeze of the process catches a flush in flight.
    StallBeforeCommit(Duration),
    /// `stall_before_swap:<ms>`: wait between writing a compaction's new
    /// files and committing their swap, so that a vacuum can run in
    /// between.
    StallBeforeSwap(Duration),
}

impl Failpoint {
    /// The fault `NEWSFLOW_FAILPOINT` names, if any.
    pub fn from_env() -> Option<Failpoint> {
        let value = std::env::var("NEWSFLOW_FAILPOINT").ok()?;
        let (name, argument) = value.split_once(':')?;
        match name {
            "crash_after_commit" => Dataset::ALL
                .into_iter()
                .find(|d| d.name() == argument)
                .map(Failpoint::CrashAfterCommit),
            "stall_before_commit" => argument
                .parse()
                .ok()
                .map(|ms| Failpoint::StallBeforeCommit(Duration::from_millis(ms))),
            "stall_before_swap" => argument
                .parse()
                .ok()
                .map(|ms| Failpoint::StallBeforeSwap(Duration::from_millis(ms))),
            _ => None,
        }
    }
}
