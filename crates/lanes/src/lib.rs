//! Side-by-side work on long-lived threads.
//!
//! A draining worker splits every polled batch by shard and every flush by
//! file, and runs the parts on one lane per core. Each part used to get a
//! thread of its own, spawned and joined: about 400 threads per 5M events,
//! each with a stack and an allocator heap whose pages were faulted in and
//! handed back every time (docs/benchmarks.md, issue 24). [`Lanes`] keeps
//! the threads instead. The first lane always runs on the calling thread,
//! which would otherwise only wait, so `n` lanes need `n - 1` threads.

use std::sync::OnceLock;

/// Up to `threads` lanes of work: the calling thread and `threads - 1`
/// long-lived helpers, started on the first call that needs them.
pub struct Lanes {
    name: &'static str,
    threads: usize,
    helpers: OnceLock<rayon::ThreadPool>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("name", &self.name)
            .field("threads", &self.threads)
            .finish()
    }
}

/// The cores this process may use: its CPU affinity and its cgroup quota,
/// so a pod with a CPU limit of 2 gets 2, and `taskset -c 0` gets 1.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl Lanes {
    /// Lanes on up to `threads` threads (at least one, the caller's); the
    /// helpers are named `newsflow-{name}-{i}` for profiles and `top -H`.
    pub fn new(name: &'static str, threads: usize) -> Lanes {
        Lanes {
            name,
            threads: threads.max(1),
            helpers: OnceLock::new(),
        }
    }

    /// How many lanes run at once, the caller's included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `work` on every job of every lane, lane by lane in order, each
    /// lane on its own thread (the first on this one), and returns the
    /// results by the index each job carries, in ascending order.
    pub fn run<T: Send, R: Send>(
        &self,
        lanes: Vec<Vec<(usize, T)>>,
        work: impl Fn(T) -> R + Sync,
    ) -> Vec<R> {
        let work = &work;
        let run = move |lane: Vec<(usize, T)>| -> Vec<(usize, R)> {
            lane.into_iter().map(|(i, job)| (i, work(job))).collect()
        };
        let mut lanes = lanes.into_iter().filter(|lane| !lane.is_empty());
        let Some(here) = lanes.next() else {
            return Vec::new();
        };
        let others: Vec<_> = lanes.collect();
        let mut results = if others.is_empty() {
            run(here)
        } else {
            let mut done: Vec<Vec<(usize, R)>> = others.iter().map(|_| Vec::new()).collect();
            let mut results = Vec::new();
            self.helpers().in_place_scope(|scope| {
                for (lane, slot) in others.into_iter().zip(done.iter_mut()) {
                    scope.spawn(move |_| *slot = run(lane));
                }
                results = run(here);
            });
            results.extend(done.into_iter().flatten());
            results
        };
        results.sort_unstable_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }

    fn helpers(&self) -> &rayon::ThreadPool {
        self.helpers.get_or_init(|| {
            let name = self.name;
            rayon::ThreadPoolBuilder::new()
                .num_threads(self.threads.saturating_sub(1).max(1))
                .thread_name(move |i| format!("newsflow-{name}-{i}"))
                .build()
                .expect("starting helper threads")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Lanes;
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    #[test]
    fn results_come_back_in_the_jobs_order_each_job_run_once() {
        let lanes = Lanes::new("test", 3);
        let jobs = vec![
            vec![(4, 40), (0, 0)],
            vec![(2, 20)],
            vec![],
            vec![(1, 10), (3, 30)],
        ];
        assert_eq!(lanes.run(jobs, |n| n + 1), vec![1, 11, 21, 31, 41]);
        assert!(lanes.run(Vec::<Vec<(usize, u8)>>::new(), |n| n).is_empty());
    }

    #[test]
    fn the_first_lane_runs_here_and_the_others_on_the_same_helpers_every_time() {
        let lanes = Lanes::new("test", 2);
        let here = std::thread::current().id();
        let mut helpers = BTreeSet::new();
        for _ in 0..20 {
            let seen = Mutex::new(Vec::new());
            lanes.run(vec![vec![(0, ())], vec![(1, ())]], |()| {
                seen.lock().unwrap().push(std::thread::current().id())
            });
            let seen = seen.into_inner().unwrap();
            assert!(seen.contains(&here), "the first lane ran elsewhere");
            helpers.extend(
                seen.into_iter()
                    .filter(|id| *id != here)
                    .map(|id| format!("{id:?}")),
            );
        }
        assert_eq!(
            helpers.len(),
            1,
            "a thread per call, not one kept: {helpers:?}"
        );
    }
}
