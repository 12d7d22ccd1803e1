//! Secrets in configuration: passwords and tokens that may come from the
//! file, an environment variable or a file of their own (a mounted
//! Kubernetes Secret), and that never appear in a log line, an error
//! message or a dump of the configuration.

use std::fmt;
use std::path::Path;

/// A value that is never printed. `Debug` and `Display` show `[redacted]`;
/// the value itself is reached only through [`Secret::expose`], at the one
/// place that hands it to a client library or compares it. There is no
/// `PartialEq`: `==` would compare in variable time; use
/// [`Secret::matches`].
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the client that needs it. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time that depends only on the
    /// candidate's length, so a remote caller cannot learn the secret a
    /// byte at a time from response timings.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        // Walk the candidate fully whatever its length; a length mismatch
        // still fails, and leaks only that the length differs.
        let mut difference = u8::from(expected.len() != candidate.len());
        for (i, byte) in candidate.iter().enumerate() {
            let other = expected.get(i).copied().unwrap_or(0);
            difference |= byte ^ other;
        }
        difference == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Parts of a librdkafka property name that mark its value as a secret.
/// A rule, not a list of today's properties, so that a property librdkafka
/// adds later (as it added the OAuth assertion keys) is redacted too.
const SECRET_NAME_PARTS: [&str; 13] = [
    "password",
    "passphrase",
    "secret",
    "token",
    "credential",
    "username",
    "private.key",
    "ssl.key",
    "ssl_key",
    "keystore",
    ".pem",
    "oauthbearer.config",
    "jaas",
];

/// Whether the value of librdkafka property `key` is a secret: its name
/// contains one of [`SECRET_NAME_PARTS`] (case-insensitively). Such values
/// are shown as `[redacted]` in the configuration dump, in errors and in
/// logs.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_NAME_PARTS.iter().any(|part| key.contains(part))
}

/// `kafka.properties`: librdkafka properties passed through as they are.
/// Values of secret-looking keys ([`is_secret_property`]) never print.
#[derive(Clone, Default)]
pub struct KafkaProperties(std::collections::BTreeMap<String, String>);

impl KafkaProperties {
    pub(crate) fn new(properties: std::collections::BTreeMap<String, String>) -> Self {
        KafkaProperties(properties)
    }

    /// Every property, for the client configuration. Never log the values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret_property(k) {
                    "[redacted]"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

/// Reads a secret from a file, dropping one trailing newline (as `echo`
/// and `kubectl create secret --from-file` leave). The error names the
/// file, never its contents.
pub(crate) fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let mut text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_never_printed() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
    }

    #[test]
    fn matches_only_the_exact_value() {
        let secret = Secret::new("s3cret-token");
        assert!(secret.matches(b"s3cret-token"));
        for wrong in [
            &b""[..],
            b"s3cret-toke",
            b"s3cret-token!",
            b"S3cret-token",
            b"x",
        ] {
            assert!(!secret.matches(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn files_lose_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "p4ss\n").unwrap();
        assert_eq!(read_secret_file(&path).unwrap().expose(), "p4ss");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_secret_file(&path).unwrap_err().contains("empty"));
    }
}
