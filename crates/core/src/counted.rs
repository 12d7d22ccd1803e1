//! What newsflow counts: every event type, the topic it arrives on, the
//! stable tag its dedup fingerprints carry, and the per-article counter
//! it feeds, with that counter's column and how it tells events apart.
//!
//! **This is the one list to extend.** The per-article state, the deltas
//! of open windows, the rows of `article_totals` and `article_engagement`,
//! their Arrow schemas and columns, the checkpoint records, the decoder's
//! type names and the per-type tallies and metrics are all derived from
//! [`EVENT_TYPES`] and [`COUNTERS`]; ARCHITECTURE.md ("Adding a counted
//! event type") lists what else a new type needs (its fields in decoding,
//! the contract and its JSON schema).
//!
//! Numbers here are persisted: a fingerprint tag is mixed into the dedup
//! memory that checkpoints hold, and a counter's `state_tag` names its
//! count in checkpoints. Changing or reusing one corrupts the state of
//! every running shard; a new entry takes a new number.

use std::ops::{Index, IndexMut};

/// The kind of observation an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// An article appeared; carries its title.
    ArticlePublished,
    /// A source confirmed the article's story.
    SourceConfirmed,
    /// A social-media comment about the article was seen.
    SocialComment,
    /// A forum post about the article was seen.
    ForumPost,
}

/// One of the co-partitioned event topics (`topics.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventTopic {
    /// `topics.articles`
    Articles,
    /// `topics.comments`
    Comments,
    /// `topics.forum_posts`
    ForumPosts,
}

impl EventTopic {
    /// The three, in the order of the settings' `event_topics`.
    pub const ALL: [EventTopic; 3] = [
        EventTopic::Articles,
        EventTopic::Comments,
        EventTopic::ForumPosts,
    ];
}

/// A per-article count of the footer: one column of `article_totals` and
/// of `article_engagement`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    /// Distinct confirming sources.
    ConfirmingSources,
    /// Distinct social-media comments.
    SocialComments,
    /// Distinct forum posts.
    ForumPosts,
}

/// How a counter tells one counted event from another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distinct {
    /// By the event's `source_id`, compared case-insensitively: an article
    /// keeps the set of its sources. At most one counter counts this way.
    SourceId,
    /// By `event_id`: every event counted once within the dedup horizon
    /// adds one.
    EventId,
}

/// What the list says of one event type.
#[derive(Clone, Copy, Debug)]
pub struct TypeSpec {
    /// The type.
    pub event_type: EventType,
    /// The wire name, as in the `event_type` field and metric labels.
    pub name: &'static str,
    /// The topic producers publish it to.
    pub topic: EventTopic,
    /// Mixed into its dedup fingerprints (persisted: never change one).
    pub fingerprint_tag: u64,
    /// The counter it feeds, if any (`article_published` feeds none: it
    /// carries the title).
    pub counter: Option<Counter>,
}

/// What the list says of one counter.
#[derive(Clone, Copy, Debug)]
pub struct CounterSpec {
    /// The counter.
    pub counter: Counter,
    /// Its column in `article_totals` and `article_engagement`.
    pub column: &'static str,
    /// How it tells events apart.
    pub distinct: Distinct,
    /// The number its count is kept under in checkpoints (persisted: never
    /// change or reuse one).
    pub state_tag: u8,
}

/// Every event type, in [`EventType`]'s order.
pub const EVENT_TYPES: [TypeSpec; 4] = [
    TypeSpec {
        event_type: EventType::ArticlePublished,
        name: "article_published",
        topic: EventTopic::Articles,
        fingerprint_tag: 0,
        counter: None,
    },
    TypeSpec {
        event_type: EventType::SourceConfirmed,
        name: "source_confirmed",
        topic: EventTopic::Articles,
        fingerprint_tag: 1,
        counter: Some(Counter::ConfirmingSources),
    },
    TypeSpec {
        event_type: EventType::SocialComment,
        name: "social_comment",
        topic: EventTopic::Comments,
        fingerprint_tag: 2,
        counter: Some(Counter::SocialComments),
    },
    TypeSpec {
        event_type: EventType::ForumPost,
        name: "forum_post",
        topic: EventTopic::ForumPosts,
        fingerprint_tag: 3,
        counter: Some(Counter::ForumPosts),
    },
];

/// Every counter, in [`Counter`]'s order, which is the order of the
/// columns.
pub const COUNTERS: [CounterSpec; 3] = [
    CounterSpec {
        counter: Counter::ConfirmingSources,
        column: "confirming_sources",
        distinct: Distinct::SourceId,
        state_tag: 1,
    },
    CounterSpec {
        counter: Counter::SocialComments,
        column: "social_comments",
        distinct: Distinct::EventId,
        state_tag: 2,
    },
    CounterSpec {
        counter: Counter::ForumPosts,
        column: "forum_posts",
        distinct: Distinct::EventId,
        state_tag: 3,
    },
];

/// Number of event types.
pub const EVENT_TYPE_COUNT: usize = EVENT_TYPES.len();
/// Number of counters.
pub const COUNTER_COUNT: usize = COUNTERS.len();

// The lists are indexed by the enums' positions: hold them to it at
// compile time, with the rules on persisted numbers.
const _: () = check_lists();

const fn check_lists() {
    let mut i = 0;
    while i < EVENT_TYPE_COUNT {
        assert!(EVENT_TYPES[i].event_type as usize == i, "EVENT_TYPES order");
        let mut j = 0;
        while j < i {
            assert!(
                EVENT_TYPES[j].fingerprint_tag != EVENT_TYPES[i].fingerprint_tag,
                "fingerprint tags are unique"
            );
            j += 1;
        }
        i += 1;
    }
    let mut sources = 0;
    let mut i = 0;
    while i < COUNTER_COUNT {
        assert!(COUNTERS[i].counter as usize == i, "COUNTERS order");
        if matches!(COUNTERS[i].distinct, Distinct::SourceId) {
            sources += 1;
        }
        let mut j = 0;
        while j < i {
            assert!(
                COUNTERS[j].state_tag != COUNTERS[i].state_tag,
                "state tags are unique"
            );
            j += 1;
        }
        i += 1;
    }
    assert!(sources <= 1, "one counter at most counts by source_id");
}

impl EventType {
    /// Every event type, in a fixed order.
    pub const ALL: [EventType; EVENT_TYPE_COUNT] = {
        let mut all = [EventType::ArticlePublished; EVENT_TYPE_COUNT];
        let mut i = 0;
        while i < EVENT_TYPE_COUNT {
            all[i] = EVENT_TYPES[i].event_type;
            i += 1;
        }
        all
    };

    /// What the list says of this type.
    pub fn spec(self) -> &'static TypeSpec {
        &EVENT_TYPES[self as usize]
    }

    /// The position in [`EventType::ALL`], for per-type arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The wire name, as in the `event_type` field.
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// Parses the wire name.
    pub fn parse(name: &str) -> Option<EventType> {
        EVENT_TYPES
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.event_type)
    }

    /// The topic this type is published to.
    pub fn topic(self) -> EventTopic {
        self.spec().topic
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Counter {
    /// Every counter, in column order.
    pub const ALL: [Counter; COUNTER_COUNT] = {
        let mut all = [Counter::ConfirmingSources; COUNTER_COUNT];
        let mut i = 0;
        while i < COUNTER_COUNT {
            all[i] = COUNTERS[i].counter;
            i += 1;
        }
        all
    };

    /// What the list says of this counter.
    pub fn spec(self) -> &'static CounterSpec {
        &COUNTERS[self as usize]
    }

    /// Its column name.
    pub fn column(self) -> &'static str {
        self.spec().column
    }

    /// The counter whose checkpoint tag is `tag`, if this release knows it.
    pub fn from_state_tag(tag: u8) -> Option<Counter> {
        COUNTERS
            .iter()
            .find(|c| c.state_tag == tag)
            .map(|c| c.counter)
    }
}

/// One value per counter, indexed by [`Counter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PerCounter<T>(pub [T; COUNTER_COUNT]);

impl<T> PerCounter<T> {
    /// Each counter with its value.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, &T)> {
        Counter::ALL.into_iter().zip(self.0.iter())
    }

    /// The value `f` gives for each counter.
    pub fn from_fn(f: impl FnMut(Counter) -> T) -> Self {
        PerCounter(Counter::ALL.map(f))
    }
}

impl<T> Index<Counter> for PerCounter<T> {
    type Output = T;

    fn index(&self, counter: Counter) -> &T {
        &self.0[counter as usize]
    }
}

impl<T> IndexMut<Counter> for PerCounter<T> {
    fn index_mut(&mut self, counter: Counter) -> &mut T {
        &mut self.0[counter as usize]
    }
}

/// The footer's counts of one article (or one window's additions to them).
pub type Counts = PerCounter<i64>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The names and persisted numbers of the first release of the list
    /// never change (entries added later come after them): a change here
    /// is a change of the contract and of every checkpoint's meaning.
    #[test]
    fn the_first_entries_keep_their_names_and_numbers() {
        let first: Vec<(&str, u64)> = EVENT_TYPES[..4]
            .iter()
            .map(|t| (t.name, t.fingerprint_tag))
            .collect();
        assert_eq!(
            first,
            [
                ("article_published", 0),
                ("source_confirmed", 1),
                ("social_comment", 2),
                ("forum_post", 3)
            ]
        );
        let first: Vec<(&str, u8)> = COUNTERS[..3]
            .iter()
            .map(|c| (c.column, c.state_tag))
            .collect();
        assert_eq!(
            first,
            [
                ("confirming_sources", 1),
                ("social_comments", 2),
                ("forum_posts", 3)
            ]
        );
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
    }
}
