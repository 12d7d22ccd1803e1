//! The answer to `POST /v1/events`, bounded by design: however many lines
//! a body has, at most `ingest.max_rejected_details` rejected lines are
//! listed one by one, and the rest are only counted by reason.

use std::collections::BTreeMap;

use newsflow_core::{RejectReason, Rejection};
use serde::Serialize;

/// One line (or array element) that was not published, and why.
#[derive(Serialize)]
pub struct Rejected {
    line: usize,
    reason: &'static str,
    detail: String,
}

/// The rejected lines of one request: the first few in detail, all of
/// them counted by reason.
pub struct Rejections {
    listed: Vec<Rejected>,
    max_listed: usize,
    by_reason: BTreeMap<RejectReason, usize>,
    total: usize,
}

impl Rejections {
    pub fn new(max_listed: usize) -> Self {
        Rejections {
            listed: Vec::new(),
            max_listed,
            by_reason: BTreeMap::new(),
            total: 0,
        }
    }

    pub fn add(&mut self, line: usize, rejection: Rejection) {
        self.total += 1;
        *self.by_reason.entry(rejection.reason).or_default() += 1;
        if self.listed.len() < self.max_listed {
            self.listed.push(Rejected {
                line,
                reason: rejection.reason.code(),
                detail: rejection.detail,
            });
        }
    }

    /// Rejections counted per reason.
    pub fn by_reason(&self) -> impl Iterator<Item = (RejectReason, usize)> + '_ {
        self.by_reason.iter().map(|(reason, n)| (*reason, *n))
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

/// The JSON body of a 200 or 503 answer.
#[derive(Serialize)]
pub struct Outcome {
    pub accepted: usize,
    /// The first `ingest.max_rejected_details` rejected lines, in order.
    pub rejected: Vec<Rejected>,
    /// Every rejected line, listed or not.
    pub rejected_count: usize,
    /// Every rejected line, counted by reason code.
    pub rejected_by_reason: BTreeMap<&'static str, usize>,
    /// Valid events not published because Kafka was busy or unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpublished: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
}

impl Outcome {
    /// An answer for `accepted` events and these rejections.
    pub fn new(accepted: usize, rejections: Rejections) -> Self {
        Outcome {
            accepted,
            rejected: rejections.listed,
            rejected_count: rejections.total,
            rejected_by_reason: rejections
                .by_reason
                .iter()
                .map(|(reason, n)| (reason.code(), *n))
                .collect(),
            unpublished: None,
            error: None,
            hint: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use newsflow_core::{RejectReason, Rejection};

    use super::{Outcome, Rejections};

    fn rejection(reason: RejectReason) -> Rejection {
        Rejection {
            reason,
            detail: "x".repeat(200),
        }
    }

    #[test]
    fn only_the_first_lines_are_listed_and_every_line_is_counted() {
        let mut rejections = Rejections::new(3);
        for line in 1..=100_000 {
            let reason = if line % 2 == 0 {
                RejectReason::InvalidJson
            } else {
                RejectReason::NotAnObject
            };
            rejections.add(line, rejection(reason));
        }
        let answer = serde_json::to_value(Outcome::new(5, rejections)).unwrap();
        assert_eq!(answer["rejected"].as_array().unwrap().len(), 3);
        assert_eq!(answer["rejected"][2]["line"], 3);
        assert_eq!(answer["rejected"][2]["reason"], "not_an_object");
        assert_eq!(answer["rejected_count"], 100_000);
        assert_eq!(answer["rejected_by_reason"]["invalid_json"], 50_000);
        assert_eq!(answer["rejected_by_reason"]["not_an_object"], 50_000);
        assert!(answer.to_string().len() < 2_000, "{answer}");
    }
}
