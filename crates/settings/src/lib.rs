//! Configuration for the newsflow binaries, read once at start-up.
//!
//! Layers, later wins: built-in defaults < a TOML file (`--config PATH`) <
//! environment variables `NEWSFLOW__SECTION__KEY` (for example
//! `NEWSFLOW__KAFKA__BROKERS=127.0.0.1:9092`). The result is validated into
//! [`Settings`]: durations are parsed, lists checked non-empty, and any
//! unknown key or bad value fails with an error naming the key.
//!
//! ```
//! let settings = newsflow_settings::load_from(None, std::iter::empty::<(String, String)>()).unwrap();
//! assert_eq!(settings.topics.articles, "news.articles");
//! assert_eq!(settings.window.size, std::time::Duration::from_secs(3600));
//! ```

use std::path::Path;

use config::{Config, Environment, File, FileFormat};

mod raw;
mod secret;
#[cfg(test)]
mod tests;
mod types;
mod validate;

pub use secret::{is_secret_property, KafkaProperties, Secret};
pub use types::*;

/// A configuration problem, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read or parsed, or a key is unknown or of the
    /// wrong type (the config crate's message names the key).
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A key has a value outside its rule.
    #[error("configuration key `{key}`: {problem}")]
    Invalid {
        /// Dotted key, e.g. `window.size`.
        key: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
}

/// Refuses a file that is not TOML, saying where without quoting it: the
/// `config` crate's own message shows the offending line, and in a file of
/// passwords that line may be one.
fn check_toml_syntax(path: &Path, text: &str) -> Result<(), SettingsError> {
    let Err(error) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let at = error.span().map_or(0, |span| span.start).min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Err(SettingsError::Invalid {
        key: "--config",
        problem: format!(
            "{} is not valid TOML at line {line}, column {column} (the line is not shown: it may hold a secret)",
            path.display()
        ),
    })
}

/// The settings with nothing configured: every default.
pub fn defaults() -> Settings {
    load_from(None, std::iter::empty::<(String, String)>()).expect("the defaults are valid")
}

/// Loads settings from the optional file and the process environment.
pub fn load(config_file: Option<&Path>) -> Result<Settings, SettingsError> {
    load_from(config_file, std::env::vars())
}

/// Loads settings from the optional file and the given environment, which
/// tests pass explicitly instead of mutating the process environment.
pub fn load_from<I>(config_file: Option<&Path>, env: I) -> Result<Settings, SettingsError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("NEWSFLOW__"))
        .collect();
    let mut builder = Config::builder();
    if let Some(path) = config_file {
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Invalid {
            key: "--config",
            problem: format!("cannot read {}: {e}", path.display()),
        })?;
        check_toml_syntax(path, &text)?;
        builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
    }
    builder = builder.add_source(
        Environment::with_prefix("NEWSFLOW")
            .prefix_separator("__")
            .separator("__")
            .source(Some(env)),
    );
    let raw: raw::Root = builder.build()?.try_deserialize()?;
    raw.validate()
}
