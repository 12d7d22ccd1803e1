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

    /// Runs `work` on every job and returns the results in the jobs'
    /// order. The jobs are spread over the lanes by `weight`, the heaviest
    /// first, each to the lane with the least so far, so that the lanes
    /// finish together (equal weights go round the lanes in turn).
    pub fn run<T: Send, R: Send>(
        &self,
        jobs: Vec<T>,
        weight: impl Fn(&T) -> usize,
        work: impl Fn(T) -> R + Sync,
    ) -> Vec<R> {
        let work = &work;
        let run = move |lane: Vec<(usize, T)>| -> Vec<(usize, R)> {
            lane.into_iter().map(|(i, job)| (i, work(job))).collect()
        };
        let mut lanes = self.spread(jobs, weight).into_iter();
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

    /// The jobs, each with its index, in up to `threads` non-empty lanes.
    fn spread<T>(&self, jobs: Vec<T>, weight: impl Fn(&T) -> usize) -> Vec<Vec<(usize, T)>> {
        let lanes = self.threads.min(jobs.len());
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(weight(&jobs[i])));
        let mut loads: Vec<(usize, Vec<(usize, T)>)> =
            (0..lanes).map(|_| (0, Vec::new())).collect();
        let mut jobs: Vec<Option<T>> = jobs.into_iter().map(Some).collect();
        for i in order {
            let job = jobs[i].take().expect("each job once");
            let lane = loads
                .iter_mut()
                .min_by_key(|(load, _)| *load)
                .expect("a lane for every job");
            lane.0 += weight(&job);
            lane.1.push((i, job));
        }
        loads.into_iter().map(|(_, lane)| lane).collect()
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
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;

    #[test]
    fn results_come_back_in_the_jobs_order_each_job_run_once() {
        let jobs: Vec<(u32, usize)> = vec![(0, 5), (1, 90), (2, 1), (3, 40), (4, 40)];
        for threads in [1, 2, 3, 8] {
            let lanes = Lanes::new("test", threads);
            let done = lanes.run(jobs.clone(), |(_, n)| *n, |(id, n)| (id, n * 2));
            assert_eq!(done, vec![(0, 10), (1, 180), (2, 2), (3, 80), (4, 80)]);
        }
        let lanes = Lanes::new("test", 2);
        assert!(lanes.run(Vec::<u32>::new(), |_| 1, |j| j).is_empty());
    }

    #[test]
    fn the_weights_are_spread_over_the_lanes() {
        let threads_used = Mutex::new(BTreeMap::new());
        let jobs: Vec<usize> = vec![100, 60, 50, 10];
        Lanes::new("test", 2).run(
            jobs,
            |n| *n,
            |n| {
                let me = std::thread::current().id();
                *threads_used
                    .lock()
                    .unwrap()
                    .entry(format!("{me:?}"))
                    .or_insert(0) += n;
            },
        );
        // Largest first, each to the lighter lane: 100 + 10 and 60 + 50,
        // so neither lane waits for a pile the other could have taken.
        let mut loads: Vec<usize> = threads_used.into_inner().unwrap().into_values().collect();
        loads.sort_unstable();
        assert_eq!(loads, vec![110, 110]);
    }

    #[test]
    fn the_first_lane_runs_here_and_the_others_on_the_same_helpers_every_time() {
        let lanes = Lanes::new("test", 2);
        let here = std::thread::current().id();
        let mut helpers = BTreeSet::new();
        for _ in 0..20 {
            let seen = Mutex::new(Vec::new());
            lanes.run(
                vec![(), ()],
                |_| 1,
                |()| seen.lock().unwrap().push(std::thread::current().id()),
            );
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
