//! Decoding and validation of untrusted Kafka messages, then counting what
//! passes. The input's first byte chooses the key: 0 means no key, n in
//! 1..=128 takes the next n bytes as the key (values above 128 wrap); the
//! rest is the message value.
//!
//! Properties: no panic, no allocation beyond libFuzzer's limit (set by
//! `make fuzz`), the fast path of decoding answers exactly as the general
//! parser does, and every accepted event obeys the contract's rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use newsflow_core::event::{
    check_article_id, decode_unkeyed, decode_unkeyed_fast, decode_unkeyed_general,
};
use newsflow_core::time::{DAY, SECOND};
use newsflow_core::{decode, CountingRules, DecodeLimits, Shard};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let key_len = usize::from(selector % 129).min(rest.len());
    let (key, value) = rest.split_at(key_len);
    let key = (selector % 129 != 0).then_some(key);
    let limits = DecodeLimits {
        max_message_bytes: 256 * 1024,
    };

    let unkeyed = decode_unkeyed(value, &limits);
    let general = decode_unkeyed_general(value, &limits);
    assert_eq!(unkeyed, general);
    if let Some(event) = decode_unkeyed_fast(value, &limits) {
        assert_eq!(Ok(event), general, "the fast path must only accept as the general parser does");
    }
    let keyed = decode(key, value, &limits);
    if let Ok(event) = &keyed {
        // A keyed message that passes is one whose key is its article id.
        assert_eq!(key, Some(event.article_id.as_bytes()));
        assert!(unkeyed.is_ok(), "keyed accepted what unkeyed refused");
    }
    if let Ok(event) = unkeyed {
        assert!(check_article_id(&event.article_id).is_ok());
        assert!(!event.event_id.is_empty() && event.event_id.len() <= 128);
        let mut shard = Shard::new(CountingRules {
            window_size: 3600 * SECOND,
            dedup_horizon: 7 * DAY,
            max_out_of_orderness: 300 * SECOND,
        });
        shard.apply(&event);
        shard.apply(&event); // a redelivery
        let drained = shard.drain(event.occurred_at + 1, true, 1);
        assert_eq!(drained.totals.len(), 1, "one article, one totals row");
    }
});
