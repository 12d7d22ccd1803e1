//! NDJSON as every reader of ours takes it: lines split at `\n`, a
//! trailing `\r` dropped, blank lines skipped, numbered from 1 as lines of
//! the input so a sender can find the one that was rejected.

/// The event on one line of NDJSON (without its `\n`), or `None` for a
/// blank line.
pub fn event_on(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    (!line.iter().all(u8::is_ascii_whitespace)).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::event_on;

    #[test]
    fn carriage_returns_go_and_blank_lines_are_skipped() {
        assert_eq!(event_on(b"{\"a\":1}\r"), Some(&b"{\"a\":1}"[..]));
        assert_eq!(event_on(b"not json"), Some(&b"not json"[..]));
        assert_eq!(event_on(b"  \t\r"), None);
        assert_eq!(event_on(b""), None);
    }
}
