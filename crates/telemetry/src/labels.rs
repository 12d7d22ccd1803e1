//! Label values as types. A metric whose label is one of a few fixed
//! values takes one of these enums, so a misspelt label is a compile error
//! and `Metrics::preregister` can loop over `ALL` instead of repeating the
//! strings.

use newsflow_core::RejectReason;

/// Declares a label enum with its `ALL` values and their `as_str` text.
macro_rules! label {
    (
        $(#[$doc:meta])*
        $name:ident { $( $(#[$vdoc:meta])* $variant:ident => $text:literal ),+ $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vdoc])* $variant ),+
        }

        impl $name {
            /// Every value, to pre-register the series.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
}

label! {
    /// What a failed flush could not make durable: the `stage` of
    /// `newsflow_flush_failures_total`.
    FlushStage {
        /// The lake: data files, checkpoint or table commits.
        Output => "output",
        /// The dead letters, which must be in Kafka before a checkpoint
        /// covers their records.
        DeadLetters => "dead_letters",
    }
}

label! {
    /// A Delta table of the lake: the `dataset` of the written-files
    /// series and the `table` of the lake-commit series.
    Table {
        /// `article_totals/`
        ArticleTotals => "article_totals",
        /// `article_engagement/`
        ArticleEngagement => "article_engagement",
        /// `events/`
        Events => "events",
    }
}

label! {
    /// What became of a shard's flush in one Delta commit: the `outcome`
    /// of `newsflow_lake_commits_total`.
    LakeOutcome {
        /// Committed.
        Committed => "committed",
        /// A race lost to another commit, tried again.
        ConflictRetried => "conflict_retried",
        /// Left out because another owner committed for the shard.
        Fenced => "fenced",
    }
}

label! {
    /// The `result` of `newsflow_offset_commits_total`.
    OffsetCommit {
        /// The group took the offsets.
        Ok => "ok",
        /// It did not (the next flush commits again).
        Error => "error",
    }
}

impl OffsetCommit {
    /// The label of a commit that succeeded (`true`) or not.
    pub fn of(ok: bool) -> Self {
        if ok {
            OffsetCommit::Ok
        } else {
            OffsetCommit::Error
        }
    }
}

label! {
    /// A rebalance callback: the `kind` of `newsflow_rebalances_total`.
    Rebalance {
        /// Partitions given to this worker.
        Assign => "assign",
        /// Partitions taken away.
        Revoke => "revoke",
    }
}

label! {
    /// What became of events received over HTTP: the `outcome` of
    /// `newsflow_ingest_events_total`.
    IngestOutcome {
        /// Published and acknowledged by Kafka.
        Accepted => "accepted",
        /// Invalid; reported in the answer and not published.
        Rejected => "rejected",
        /// Valid, but Kafka was busy or unavailable; the client retries.
        Unpublished => "unpublished",
    }
}

label! {
    /// Why an HTTP server closed a connection itself: the `reason` of
    /// `newsflow_ingest_connections_closed_total` and
    /// `newsflow_footer_connections_closed_total`.
    ConnectionClose {
        /// An idle connection let go for a new one at `max_connections`.
        Evicted => "evicted",
        /// A new connection refused because no connection could go.
        Refused => "refused",
        /// A connection whose request headers missed `header_timeout`.
        HeaderTimeout => "header_timeout",
    }
}

label! {
    /// Why Kafka did not take an event we sent.
    DeliveryFailure {
        /// Not acknowledged within the delivery timeout.
        TimedOut => "timed_out",
        /// Larger than the broker accepts.
        TooLarge => "too_large",
        /// The topic or partition does not exist.
        UnknownTopic => "unknown_topic",
        /// The producer's queue was full.
        QueueFull => "queue_full",
        /// Anything else the broker or client reported.
        BrokerError => "broker_error",
    }
}

/// Why an event was not produced: the `reason` of
/// `newsflow_produce_errors_total`. Lines refused before sending carry
/// their reject reason; events Kafka did not take, a delivery failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProduceError {
    /// Refused by validation before it was sent.
    Rejected(RejectReason),
    /// Sent, and not taken.
    Delivery(DeliveryFailure),
}

impl ProduceError {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProduceError::Rejected(reason) => reason.code(),
            ProduceError::Delivery(failure) => failure.as_str(),
        }
    }

    /// Every value, to pre-register the series.
    pub fn all() -> impl Iterator<Item = ProduceError> {
        let delivery = DeliveryFailure::ALL
            .iter()
            .map(|f| ProduceError::Delivery(*f));
        let rejected = RejectReason::ALL.into_iter().map(ProduceError::Rejected);
        delivery.chain(rejected)
    }
}

impl From<RejectReason> for ProduceError {
    fn from(reason: RejectReason) -> Self {
        ProduceError::Rejected(reason)
    }
}

impl From<DeliveryFailure> for ProduceError {
    fn from(failure: DeliveryFailure) -> Self {
        ProduceError::Delivery(failure)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn produce_error_labels_are_distinct_except_too_large() {
        // `too_large` is both a reject reason (over limits.max_message_bytes)
        // and a delivery failure (over the broker's limit): one series.
        let labels: Vec<&str> = ProduceError::all().map(ProduceError::as_str).collect();
        let distinct: HashSet<&str> = labels.iter().copied().collect();
        assert_eq!(labels.len(), distinct.len() + 1);
    }
}

label! {
    /// Which part of the footer API answered: the `route` of
    /// `newsflow_footer_requests_total`.
    FooterRoute {
        /// `GET /v1/articles/{id}/footer`.
        Footer => "footer",
        /// `GET /v1/articles/{id}/footer.html`.
        FooterHtml => "footer_html",
        /// `GET /v1/footers?ids=`.
        Footers => "footers",
        /// A CORS preflight (`OPTIONS`).
        Preflight => "preflight",
        /// Any other path or method.
        Other => "other",
    }
}

label! {
    /// Why the footer service loaded the table afresh: the `reason` of
    /// `newsflow_footer_reloads_total`.
    FooterReload {
        /// The first load.
        Start => "start",
        /// The commit after the version held is gone from the log.
        LogGap => "log_gap",
        /// A file a commit added was gone when read (vacuumed after a
        /// later compaction replaced it).
        FileGone => "file_gone",
        /// A commit removed rows or changed the table's schema.
        TableRewritten => "table_rewritten",
    }
}

label! {
    /// Why a row of `article_totals` was not taken as a footer: the
    /// `reason` of `newsflow_footer_rows_skipped_total`.
    SkippedRow {
        /// Its `article_id` is null.
        NullId => "null_id",
        /// Its `article_id` breaks the contract's rule.
        InvalidId => "invalid_id",
        /// A count or its version is null.
        NullNumber => "null_number",
        /// A count or its version is negative or too large to hold.
        OutOfRange => "out_of_range",
        /// Its title is longer than an event can carry.
        TitleTooLong => "title_too_long",
    }
}
