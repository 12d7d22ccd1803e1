//! The rows of the `article_totals/` and `article_engagement/` datasets, as
//! plain structs. The lake crate turns them into Arrow columns; the core only
//! decides what they say.

use serde::{Deserialize, Serialize};

use crate::counted::Counts;
use crate::time::Micros;

/// The footer under a news story, as a reader sees it: what the current
/// row of `article_totals/` says, and what the generator's oracle expects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footer {
    /// The title, once its `article_published` event has arrived.
    pub title: Option<String>,
    /// Distinct confirming sources, compared case-insensitively.
    pub confirming_sources: i64,
    /// Distinct social-media comments.
    pub social_comments: i64,
    /// Distinct forum posts.
    pub forum_posts: i64,
}

/// One snapshot of an article's footer (a row of `article_totals/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotalsRow {
    /// The article.
    pub article_id: String,
    /// Its title, once its `article_published` event has arrived.
    pub title: Option<String>,
    /// Its count of every counter (see [`crate::counted`]).
    pub counts: Counts,
    /// Earliest event time seen for the article.
    pub first_event_at: Micros,
    /// Latest event time seen for the article.
    pub last_event_at: Micros,
    /// Strictly increasing per article; the largest is the current row.
    pub version: i64,
    /// When the row was produced (processing time).
    pub emitted_at: Micros,
}

/// An additive delta of one article's activity in one event-time window (a
/// row of `article_engagement/`). A window's counts are the sum of its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngagementRow {
    /// The article.
    pub article_id: String,
    /// Inclusive start of the tumbling window.
    pub window_start: Micros,
    /// Exclusive end of the tumbling window.
    pub window_end: Micros,
    /// What each counter counted in this window (a source is placed in the
    /// window of the event that first confirmed it).
    pub counts: Counts,
    /// When the row was produced (processing time).
    pub emitted_at: Micros,
}
