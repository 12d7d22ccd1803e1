//! Helpers shared by the core's integration tests.

pub mod events;

use newsflow_core::time::{DAY, SECOND};
use newsflow_core::{CountingRules, DecodeLimits, SplitMix64};

/// The decoding limits these tests run with: the contract's 256 KiB. (The
/// shipped values live in `newsflow-settings`; the core has none.)
#[allow(dead_code)]
pub const LIMITS: DecodeLimits = DecodeLimits {
    max_message_bytes: 256 * 1024,
};

/// The counting rules these tests run with: hour windows, a week's dedup
/// horizon, five minutes of out-of-orderness.
#[allow(dead_code)]
pub fn rules() -> CountingRules {
    CountingRules {
        window_size: 3600 * SECOND,
        dedup_horizon: 7 * DAY,
        max_out_of_orderness: 300 * SECOND,
    }
}

/// The workspace's generator with the index-sized draws these tests use,
/// so that a failure of a randomized test reproduces from its seed.
#[allow(dead_code)]
pub struct Rng(SplitMix64);

#[allow(dead_code)]
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
}
