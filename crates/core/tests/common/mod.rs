//! Helpers shared by the core's integration tests.

use newsflow_core::SplitMix64;

/// The workspace's generator with the index-sized draws these tests use,
/// so that a failure of a randomized test reproduces from its seed.
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
}
