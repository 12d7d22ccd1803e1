//! The footer service's happenings, one method each.

use crate::labels::{ConnectionClose, FooterReload, FooterRoute, SkippedRow};
use crate::metrics::Metrics;

impl Metrics {
    pub(crate) fn preregister_footer(&self) {
        let series = &self.footer;
        for route in FooterRoute::ALL {
            series.request_duration.with_label_values(&[route.as_str()]);
        }
        for reason in FooterReload::ALL {
            series.reloads.with_label_values(&[reason.as_str()]);
        }
        for reason in SkippedRow::ALL {
            series.rows_skipped.with_label_values(&[reason.as_str()]);
        }
        for reason in ConnectionClose::ALL {
            series
                .connections_closed
                .with_label_values(&[reason.as_str()]);
        }
    }

    /// A footer API request on `route` was answered with `status` after
    /// `seconds`.
    pub fn footer_request(&self, route: FooterRoute, status: u16, seconds: f64) {
        let series = &self.footer;
        series
            .requests
            .with_label_values(&[route.as_str(), status_text(status)])
            .inc();
        series
            .request_duration
            .with_label_values(&[route.as_str()])
            .observe(seconds);
    }

    /// The footers held now: how many, and the bytes they take.
    pub fn footers_held(&self, articles: usize, bytes: usize) {
        self.footer.articles.set(articles as i64);
        self.footer.index_bytes.set(bytes as i64);
    }

    /// The answers now reflect table `version`, committed at
    /// `committed_at` (Unix seconds, if known).
    pub fn footer_table_version(&self, version: u64, committed_at: Option<f64>) {
        self.footer.table_version.set(version as i64);
        if let Some(at) = committed_at {
            self.footer.commit_timestamp.set(at);
        }
    }

    /// After a read of the log: `freshness` seconds from the newest
    /// commit applied to now, and `stale` seconds since the last read that
    /// succeeded (0 if this one did).
    pub fn footer_freshness(&self, freshness: Option<f64>, stale: f64) {
        if let Some(freshness) = freshness {
            self.footer.freshness.set(freshness);
        }
        self.footer.stale.set(stale);
    }

    /// The table was loaded afresh for `reason`.
    pub fn footer_reloaded(&self, reason: FooterReload) {
        self.footer
            .reloads
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Reading the log or a file of the table failed.
    pub fn footer_log_read_failed(&self) {
        self.footer.log_read_failures.inc();
    }

    /// `n` rows were left out for `reason`.
    pub fn footer_rows_skipped(&self, reason: SkippedRow, n: u64) {
        self.footer
            .rows_skipped
            .with_label_values(&[reason.as_str()])
            .inc_by(n);
    }

    /// A data file could not be decoded and was left out.
    pub fn footer_file_unreadable(&self) {
        self.footer.files_unreadable.inc();
    }

    /// The footer API closed a connection for `reason`.
    pub fn footer_connection_closed(&self, reason: ConnectionClose) {
        self.footer
            .connections_closed
            .with_label_values(&[reason.as_str()])
            .inc();
    }
}

/// The status code as a label value, without an allocation for the
/// common ones.
fn status_text(status: u16) -> &'static str {
    match status {
        200 => "200",
        204 => "204",
        304 => "304",
        400 => "400",
        404 => "404",
        405 => "405",
        408 => "408",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}
