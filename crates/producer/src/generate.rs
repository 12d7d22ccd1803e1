//! A deterministic synthetic stream of news events, and the exact totals it
//! implies.
//!
//! The same `--seed` and `--count` give the same events in the same order,
//! on any machine, forever: the random numbers come from SplitMix64,
//! not from a library whose algorithm may change.
//!
//! The stream is built to exercise the counting rules: engagement is skewed
//! (a few articles draw most comments), some sources confirm twice with a
//! different letter case, some events are delivered twice, events of an
//! article arrive out of event-time order and interleaved with others, and
//! some articles' counts arrive before their `article_published` event.
//!
//! The expected totals are tracked by [`Oracle`], a deliberately naive
//! implementation of the contract (plain sets of ids), independent of the
//! core's counting code, so comparing the two tests the core.

use std::collections::{BTreeMap, HashSet};

use newsflow_core::{EventType, Footer, SplitMix64};

/// The stream's generator for `seed` (mixed first, so that seed 0 does
/// not start from state 0).
fn stream_rng(seed: u64) -> SplitMix64 {
    SplitMix64::new(seed ^ 0x5DEE_CE66_D1CE_4E5B)
}

/// A Pareto-distributed count with minimum `min`, shape `alpha`, capped.
fn pareto(rng: &mut SplitMix64, min: f64, alpha: f64, cap: u64) -> u64 {
    let u = 1.0 - rng.unit(); // (0, 1]
    ((min / u.powf(1.0 / alpha)) as u64).min(cap)
}

/// Shuffles `items` in place (Fisher–Yates).
fn shuffle<T>(rng: &mut SplitMix64, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

const SOURCES: &[&str] = &[
    "tagesschau.de",
    "spiegel.de",
    "zeit.de",
    "faz.net",
    "sueddeutsche.de",
    "welt.de",
    "handelsblatt.com",
    "n-tv.de",
    "dw.com",
    "deutschlandfunk.de",
    "reuters.com",
    "apnews.com",
    "bbc.co.uk",
    "theguardian.com",
    "nytimes.com",
    "washingtonpost.com",
    "lemonde.fr",
    "elpais.com",
    "corriere.it",
    "nzz.ch",
    "derstandard.at",
    "orf.at",
    "srf.ch",
    "tagesspiegel.de",
    "stern.de",
    "focus.de",
    "t-online.de",
    "rnd.de",
    "mdr.de",
    "br.de",
    "ndr.de",
    "wdr.de",
    "swr.de",
    "hr.de",
    "rbb24.de",
    "taz.de",
    "nd-aktuell.de",
    "cicero.de",
    "merkur.de",
    "abendblatt.de",
    "ksta.de",
    "rp-online.de",
    "stuttgarter-zeitung.de",
    "augsburger-allgemeine.de",
    "aljazeera.com",
    "france24.com",
    "euronews.com",
    "politico.eu",
    "bloomberg.com",
    "ft.com",
    "economist.com",
    "cnn.com",
    "nbcnews.com",
    "abc.net.au",
    "cbc.ca",
    "kyodonews.net",
    "yna.co.kr",
    "scmp.com",
    "themoscowtimes.com",
    "meduza.io",
    "kyivindependent.com",
    "ukrinform.net",
    "tass.com",
    "interfax.ru",
    "ria.ru",
    "kcna.kp",
    "nknews.org",
    "38north.org",
    "koreaherald.com",
    "japantimes.co.jp",
];
const PLATFORMS: &[&str] = &[
    "x",
    "facebook",
    "telegram",
    "reddit",
    "instagram",
    "tiktok",
    "youtube",
    "mastodon",
];
const FORUMS: &[&str] = &[
    "politik-forum.eu",
    "heise-forum",
    "spon-forum",
    "reddit-de",
    "gutefrage.net",
    "ruhrbarone-forum",
];

/// 2026-11-01T00:00:00Z in seconds: the start of generated event time.
const BASE_SECONDS: i64 = 1_761_955_200 + 365 * 86_400;

fn rfc3339(seconds: i64, micros: u32) -> String {
    let t = chrono::DateTime::from_timestamp(seconds, micros * 1000).expect("in range");
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// What the oracle remembers of one article: plain sets, nothing clever.
#[derive(Default)]
struct Seen {
    /// (event time, title) of the latest `article_published`.
    title: Option<(String, String)>,
    sources: HashSet<String>,
    comments: HashSet<String>,
    posts: HashSet<String>,
}

/// The naive, independent implementation of the counting contract used to
/// state what the output must say.
#[derive(Default)]
pub struct Oracle {
    articles: BTreeMap<String, Seen>,
    /// Messages sent, duplicates included.
    pub messages: u64,
}

impl Oracle {
    /// Records one sent event.
    pub fn record(&mut self, event: &GeneratedEvent) {
        self.messages += 1;
        let seen = self.articles.entry(event.article_id.clone()).or_default();
        match event.event_type {
            EventType::ArticlePublished => {
                let candidate = (
                    event.occurred_at.clone(),
                    event.detail.clone().unwrap_or_default(),
                );
                // The latest event time's title wins (RFC 3339 in UTC with
                // fixed precision sorts as text).
                if seen
                    .title
                    .as_ref()
                    .is_none_or(|current| candidate.0 > current.0)
                {
                    seen.title = Some(candidate);
                }
            }
            EventType::SourceConfirmed => {
                let source = event.detail.as_deref().unwrap_or_default();
                seen.sources.insert(source.to_lowercase());
            }
            EventType::SocialComment => {
                seen.comments.insert(event.event_id.clone());
            }
            EventType::ForumPost => {
                seen.posts.insert(event.event_id.clone());
            }
            // The oracle is deliberately naive and separate from the
            // counting code: it knows the types the generator emits.
            #[allow(unreachable_patterns)]
            other => unreachable!("the generator does not emit {other}"),
        }
    }

    /// The expected totals of every article.
    pub fn totals(&self) -> BTreeMap<String, Footer> {
        self.articles
            .iter()
            .map(|(id, seen)| {
                (
                    id.clone(),
                    Footer {
                        title: seen.title.as_ref().map(|(_, t)| t.clone()),
                        confirming_sources: seen.sources.len() as i64,
                        social_comments: seen.comments.len() as i64,
                        forum_posts: seen.posts.len() as i64,
                    },
                )
            })
            .collect()
    }
}

/// One generated event: its JSON text as sent, and what the oracle and the
/// publisher need to know without parsing it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedEvent {
    /// The message key and `article_id`.
    pub article_id: String,
    /// The event's type, which decides its topic.
    pub event_type: EventType,
    /// `event_id`.
    pub event_id: String,
    /// `occurred_at`, as written.
    pub occurred_at: String,
    /// The title of an `article_published`, the `source_id` of a
    /// `source_confirmed`; `None` otherwise.
    pub detail: Option<String>,
    /// The JSON object sent to Kafka.
    pub text: String,
}

/// Writes a JSON object field by field, escaping through serde_json: much
/// cheaper than building a `serde_json::Value` map per event.
struct JsonObject(Vec<u8>);

impl JsonObject {
    fn new() -> Self {
        JsonObject(b"{".to_vec())
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        serde_json::to_writer(&mut self.0, key).expect("writing to a Vec");
        self.0.push(b':');
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        serde_json::to_writer(&mut self.0, value).expect("writing to a Vec");
    }

    fn raw(&mut self, key: &str, value: &str) {
        self.key(key);
        self.0.extend_from_slice(value.as_bytes());
    }

    fn finish(mut self) -> String {
        self.0.push(b'}');
        String::from_utf8(self.0).expect("JSON text is UTF-8")
    }
}

/// Produces the stream, a block of interleaved articles at a time.
pub struct Generator {
    rng: SplitMix64,
    seed: u64,
    next_article: u64,
    pending: Vec<GeneratedEvent>,
    /// Events kept back to be delivered a second time later.
    redeliveries: Vec<GeneratedEvent>,
}

/// Articles whose events are shuffled together.
const BLOCK: u64 = 40;

impl Generator {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: stream_rng(seed),
            seed,
            next_article: 0,
            pending: Vec::new(),
            redeliveries: Vec::new(),
        }
    }

    fn article_events(&mut self, index: u64) -> Vec<GeneratedEvent> {
        let rng = &mut self.rng;
        let mut article = ArticleEvents::new(format!("gen-{}-{index:07}", self.seed));
        // Articles are published over two days of event time.
        let published = BASE_SECONDS + (index as i64 * 37) % (2 * 86_400);
        if rng.chance(0.97) {
            let title = format!("Meldung {index}: Lage in der Region");
            let url = format!("https://news.example/{}", article.id);
            article.push(
                EventType::ArticlePublished,
                published,
                Some(title.clone()),
                &[
                    ("title", &title, false),
                    ("url", &url, false),
                    ("section", "politik", false),
                    ("language", "de", false),
                ],
            );
        }
        confirmations(rng, &mut article, published);
        engagement(rng, &mut article, published);
        article.events
    }

    /// The next event, or `None` never: the stream is endless.
    pub fn next_event(&mut self) -> GeneratedEvent {
        loop {
            if let Some(value) = self.pending.pop() {
                if self.rng.chance(0.03) {
                    self.redeliveries.push(value.clone());
                }
                return value;
            }
            let mut block = Vec::new();
            for _ in 0..BLOCK {
                let index = self.next_article;
                self.next_article += 1;
                block.extend(self.article_events(index));
            }
            // Redeliveries of earlier blocks arrive mixed into this one.
            block.append(&mut self.redeliveries);
            shuffle(&mut self.rng, &mut block);
            self.pending = block;
        }
    }
}

/// The events of one generated article, numbered as they are made.
struct ArticleEvents {
    id: String,
    n: u32,
    events: Vec<GeneratedEvent>,
}

impl ArticleEvents {
    fn new(id: String) -> Self {
        ArticleEvents {
            id,
            n: 0,
            events: Vec::new(),
        }
    }

    /// Adds an event of `event_type` at `at` (seconds); `fields` are (key,
    /// value, is_raw_json) after the envelope.
    fn push(
        &mut self,
        event_type: EventType,
        at: i64,
        detail: Option<String>,
        fields: &[(&str, &str, bool)],
    ) {
        self.n += 1;
        let n = self.n;
        let kind = event_type.as_str();
        let event_id = format!("{}/{kind}/{n}", self.id);
        let occurred_at = rfc3339(at, (n * 7919) % 1_000_000);
        let mut json = JsonObject::new();
        json.raw("schema_version", "1");
        json.string("event_id", &event_id);
        json.string("event_type", kind);
        json.string("article_id", &self.id);
        json.string("occurred_at", &occurred_at);
        for (key, value, raw) in fields {
            if *raw {
                json.raw(key, value);
            } else {
                json.string(key, value);
            }
        }
        self.events.push(GeneratedEvent {
            article_id: self.id.clone(),
            event_type,
            event_id,
            occurred_at,
            detail,
            text: json.finish(),
        });
    }
}

/// Sources confirming the article, a few of them twice in other case.
fn confirmations(rng: &mut SplitMix64, article: &mut ArticleEvents, published: i64) {
    let sources = pareto(rng, 1.0, 1.3, SOURCES.len() as u64).max(1) as usize;
    let first = rng.below(SOURCES.len() as u64) as usize;
    for i in 0..sources {
        let source = SOURCES[(first + i * 7) % SOURCES.len()];
        let at = published + rng.below(6 * 3600) as i64;
        article.push(
            EventType::SourceConfirmed,
            at,
            Some(source.to_string()),
            &[("source_id", source, false)],
        );
        if rng.chance(0.1) {
            // The same source confirming again, spelled differently.
            let shouted = source.to_uppercase();
            let url = format!("https://{source}/x");
            article.push(
                EventType::SourceConfirmed,
                at + 60,
                Some(shouted.clone()),
                &[("source_id", &shouted, false), ("source_url", &url, false)],
            );
        }
    }
}

/// Comments and forum posts about the article, heavy-tailed in number.
fn engagement(rng: &mut SplitMix64, article: &mut ArticleEvents, published: i64) {
    let comments = pareto(rng, 2.0, 1.1, 3000);
    for _ in 0..comments {
        let at = published + rng.below(30 * 3600) as i64;
        let platform = PLATFORMS[rng.below(PLATFORMS.len() as u64) as usize];
        let author = format!("u{}", rng.below(50_000));
        article.push(
            EventType::SocialComment,
            at,
            None,
            &[("platform", platform, false), ("author_id", &author, false)],
        );
    }
    let posts = pareto(rng, 0.7, 1.2, 800);
    for _ in 0..posts {
        let at = published + rng.below(48 * 3600) as i64;
        let forum = FORUMS[rng.below(FORUMS.len() as u64) as usize];
        let thread = format!("t{}", rng.below(1000));
        article.push(
            EventType::ForumPost,
            at,
            None,
            &[
                ("forum", forum, false),
                ("thread_id", &thread, false),
                ("author_id", "null", true),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Generator::new(7);
        let mut b = Generator::new(7);
        for _ in 0..5000 {
            assert_eq!(a.next_event(), b.next_event());
        }
        let mut c = Generator::new(8);
        assert_ne!(Generator::new(7).next_event(), c.next_event());
    }

    #[test]
    fn every_generated_event_is_valid_and_the_stream_has_what_it_promises() {
        let mut g = Generator::new(1);
        let mut oracle = Oracle::default();
        let mut ids = HashSet::new();
        let mut redelivered = 0;
        for _ in 0..20_000 {
            let generated = g.next_event();
            let text = &generated.text;
            let event = newsflow_core::decode(
                Some(generated.article_id.as_bytes()),
                text.as_bytes(),
                &newsflow_settings::defaults().decode_limits(),
            )
            .unwrap_or_else(|r| panic!("generated an invalid event: {r}: {text}"));
            assert_eq!(event.event_type(), generated.event_type);
            assert_eq!(event.event_id, generated.event_id);
            if !ids.insert(event.event_id.into_owned()) {
                redelivered += 1;
            }
            oracle.record(&generated);
        }
        assert!(
            redelivered > 100,
            "expected redeliveries, got {redelivered}"
        );
        let totals = oracle.totals();
        assert!(totals.len() > 50);
        let most = totals.values().map(|t| t.social_comments).max().unwrap();
        let median = {
            let mut c: Vec<i64> = totals.values().map(|t| t.social_comments).collect();
            c.sort();
            c[c.len() / 2]
        };
        assert!(
            most > 20 * median.max(1),
            "engagement should be skewed: max {most}, median {median}"
        );
    }
}
