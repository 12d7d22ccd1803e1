//! A small, deterministic fuzz run that fits in every `make test`: the seed
//! article's events, mutated (bytes flipped, inserted, deleted, spliced,
//! truncated) many thousand times, go through decoding and counting. Nothing
//! may panic, and whatever is accepted obeys the contract's rules. The
//! open-ended search is `make fuzz` (cargo-fuzz, libFuzzer).
//!
//! Every input also goes through the general parser alone: the fast path
//! of decoding must give exactly its answer, event or rejection.

use newsflow_core::event::{
    check_article_id, decode_unkeyed, decode_unkeyed_fast, decode_unkeyed_general,
};
use newsflow_core::{decode, Shard};

mod common;
use common::Rng;

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"-1",
    b"1e999",
    b"\"\"",
    b"\xff",
    b"\xc3\x28",
    b"\\u0000",
    b"\\ud800",
    b"9999-12-31T23:59:59Z",
    b"..",
    b"/",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, donors: &[&[u8]]) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = INTERESTING[rng.below(INTERESTING.len())];
                input.splice(at..at, token.iter().copied());
            }
            2 if !input.is_empty() => {
                let end = (at + rng.below(16)).min(input.len());
                input.drain(at.min(end)..end);
            }
            3 => {
                let donor = donors[rng.below(donors.len())];
                let from = rng.below(donor.len());
                let to = (from + rng.below(64)).min(donor.len());
                input.splice(at..at, donor[from..to].iter().copied());
            }
            4 => input.truncate(at),
            _ => {
                let byte = rng.below(256) as u8;
                input.insert(at, byte);
            }
        }
    }
}

#[test]
fn mutated_events_never_panic_and_accepted_ones_obey_the_rules() {
    let fixture = include_str!("../../../tests/fixtures/seed-article.ndjson");
    let seeds: Vec<&[u8]> = fixture
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::as_bytes)
        .collect();
    let limits = common::LIMITS;
    let mut rng = Rng::new(0x5EED);
    let mut accepted = 0;
    let mut fast = 0;
    let mut shard = Shard::new(common::rules());
    for iteration in 0..200_000 {
        let mut input = seeds[rng.below(seeds.len())].to_vec();
        mutate(&mut rng, &mut input, &seeds);
        let result = std::panic::catch_unwind(|| decode_unkeyed(&input, &limits));
        let Ok(result) = result else {
            panic!(
                "iteration {iteration}: decode panicked on {:?}",
                String::from_utf8_lossy(&input)
            );
        };
        let general = decode_unkeyed_general(&input, &limits);
        assert_eq!(
            result,
            general,
            "iteration {iteration}: decoding and the general parser differ on {:?}",
            String::from_utf8_lossy(&input)
        );
        if let Some(event) = decode_unkeyed_fast(&input, &limits) {
            fast += 1;
            assert_eq!(
                Ok(event),
                general,
                "iteration {iteration}: the fast path accepted what the general parser did not, or differently: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
        if let Ok(event) = result {
            accepted += 1;
            assert!(
                check_article_id(&event.article_id).is_ok(),
                "iteration {iteration}"
            );
            assert!(
                (1..=128).contains(&event.event_id.len()),
                "iteration {iteration}"
            );
            let keyed = decode(Some(event.article_id.as_bytes()), &input, &limits);
            assert!(
                keyed.is_ok(),
                "iteration {iteration}: the right key must not matter"
            );
            shard.apply(&event);
        }
    }
    // Mutations must leave some events valid, or the counting path went untested.
    assert!(
        accepted > 1_000,
        "only {accepted} mutated events were valid"
    );
    assert!(fast > 1_000, "only {fast} events took the fast path");
    shard.drain(i64::MAX / 2, true, 1);
}
