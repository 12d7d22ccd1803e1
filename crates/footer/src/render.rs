//! The bodies of the footer API: a footer as JSON, a list of them, the
//! HTML fragment a page embeds, and the entity tags that let a client or
//! a CDN ask "has it changed?".

use std::fmt::Write as _;

use newsflow_core::counted::{Counter, COUNTERS};

use crate::follow::Freshness;
use crate::held::Footer;

/// The line of the footer under a story that shows `counter`, worded as
/// on the article pages (`tests/fixtures/seed-article.txt`). A new counter
/// does not compile until it has its line.
pub fn line_of(counter: Counter) -> &'static str {
    match counter {
        Counter::ConfirmingSources => "Analysierte Quellen, die diese Meldung bestätigen",
        Counter::SocialComments => "Analysierte Kommentare in sozialen Medien",
        Counter::ForumPosts => "Analysierte Forenbeiträge",
    }
}

/// `footer` as a JSON object, with how current the table is.
pub fn footer_json(out: &mut String, footer: &Footer<'_>, freshness: &Freshness) {
    out.push_str("{\"article_id\":");
    json_string(out, footer.article_id);
    out.push_str(",\"title\":");
    match footer.title {
        Some(title) => json_string(out, title),
        None => out.push_str("null"),
    }
    for (spec, count) in COUNTERS.iter().zip(footer.counts) {
        let _ = write!(out, ",\"{}\":{count}", spec.column);
    }
    let _ = write!(
        out,
        ",\"version\":{},\"table_version\":{},\"table_committed_at\":",
        footer.version, freshness.table_version
    );
    match freshness.committed_at_ms.and_then(rfc3339_ms) {
        Some(at) => {
            out.push('"');
            out.push_str(&at);
            out.push('"');
        }
        None => out.push_str("null"),
    }
    out.push('}');
}

/// A JSON list of footers.
pub fn footers_json(footers: &[Footer<'_>], freshness: &Freshness) -> String {
    let mut out = String::with_capacity(64 + footers.len() * 256);
    out.push('[');
    for (n, footer) in footers.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        footer_json(&mut out, footer, freshness);
    }
    out.push(']');
    out
}

/// The fragment a page puts under the story: the footer's lines, the
/// numbers in place, UTF-8.
pub fn footer_html(footer: &Footer<'_>) -> String {
    let mut out = String::with_capacity(320);
    out.push_str("<div class=\"newsflow-footer\" data-article-id=\"");
    html_escape(&mut out, footer.article_id);
    let _ = writeln!(out, "\" data-version=\"{}\">", footer.version);
    for (counter, count) in Counter::ALL.iter().zip(footer.counts) {
        out.push_str("<p>");
        html_escape(&mut out, line_of(*counter));
        let _ = writeln!(out, ": {count}</p>");
    }
    out.push_str("</div>\n");
    out
}

/// The entity tag of one footer: its version. Weak, because the JSON
/// also says which table version it was read at, which moves while the
/// footer does not.
pub fn footer_etag(footer: &Footer<'_>) -> String {
    format!("W/\"{}\"", footer.version)
}

/// The entity tag of a list: the ids asked for and the versions found.
pub fn list_etag(asked: &[&str], found: &[Footer<'_>]) -> String {
    // FNV-1a, unkeyed: a tag must be the same in every replica and after
    // a restart, or a CDN in front of several pods would never get a 304.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for id in asked {
        feed(id.as_bytes());
        feed(b",");
    }
    for footer in found {
        feed(&footer.version.to_le_bytes());
    }
    format!("W/\"l{hash:016x}\"")
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as
/// RFC 9110 asks for this header; `*` matches anything).
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    let wanted = bare(etag);
    if_none_match
        .split(',')
        .any(|tag| tag.trim() == "*" || bare(tag) == wanted)
}

fn json_string(out: &mut String, text: &str) {
    // serde_json escapes exactly as JSON needs; writing into a String
    // cannot fail.
    let quoted = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
    out.push_str(&quoted);
}

fn html_escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 in UTC.
fn rfc3339_ms(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|at| at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Footer<'static> {
        Footer {
            article_id: "seed-article",
            title: Some("Ein \"Titel\" <mit> Zeichen"),
            counts: [16, 166, 37],
            version: 7,
        }
    }

    fn fresh() -> Freshness {
        Freshness {
            table_version: 42,
            committed_at_ms: Some(1_764_720_000_123),
            stale_seconds: None,
        }
    }

    #[test]
    fn the_json_names_every_counter_and_the_table_version() {
        let mut out = String::new();
        footer_json(&mut out, &seed(), &fresh());
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["article_id"], "seed-article");
        assert_eq!(value["title"], "Ein \"Titel\" <mit> Zeichen");
        assert_eq!(value["confirming_sources"], 16);
        assert_eq!(value["social_comments"], 166);
        assert_eq!(value["forum_posts"], 37);
        assert_eq!(value["version"], 7);
        assert_eq!(value["table_version"], 42);
        assert_eq!(value["table_committed_at"], "2025-12-03T00:00:00.123Z");
    }

    #[test]
    fn the_html_has_the_three_lines_of_the_article_page() {
        let html = footer_html(&seed());
        let page = include_str!("../../../tests/fixtures/seed-article.txt");
        for line in [
            "Analysierte Quellen, die diese Meldung bestätigen: 16",
            "Analysierte Kommentare in sozialen Medien: 166",
            "Analysierte Forenbeiträge: 37",
        ] {
            assert!(page.contains(line), "the seed page words it so: {line}");
            assert!(html.contains(&format!("<p>{line}</p>")), "{html}");
        }
    }

    #[test]
    fn the_contract_names_every_field_of_the_json_footer() {
        let contract = include_str!("../../../docs/CONTRACT.md");
        let section = &contract[contract.find("## 8. The footer API").expect("section 8")..];
        let mut out = String::new();
        footer_json(&mut out, &seed(), &fresh());
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        for field in value.as_object().unwrap().keys() {
            assert!(
                section.contains(&format!("| `{field}` |")),
                "section 8 lists `{field}`"
            );
        }
        for counter in Counter::ALL {
            assert!(
                section.contains(line_of(counter)),
                "section 8 shows {counter:?}'s line"
            );
        }
    }

    #[test]
    fn entity_tags_match_weakly_and_in_lists() {
        let tag = footer_etag(&seed());
        assert_eq!(tag, "W/\"7\"");
        assert!(none_match("W/\"7\"", &tag));
        assert!(none_match("\"7\"", &tag));
        assert!(none_match("\"1\", W/\"7\"", &tag));
        assert!(none_match("*", &tag));
        assert!(!none_match("W/\"8\"", &tag));
        let a = list_etag(&["a", "b"], &[seed()]);
        assert_eq!(a, list_etag(&["a", "b"], &[seed()]));
        assert_ne!(a, list_etag(&["a", "c"], &[seed()]));
    }
}
