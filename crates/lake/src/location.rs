//! Where the lake lives: `output.uri` turned into an object store and the
//! URL of the output root.
//!
//! Credentials and endpoints come from the variables every tool of the
//! ecosystem reads (`AWS_*`, `GOOGLE_*`, `AZURE_*`: the builders' own
//! `from_env`), so a worker, DuckDB, Polars and Spark share one set; the
//! `[output.storage]` keys are applied on top, for whatever the environment
//! cannot say.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::DynObjectStore;
use url::Url;

use crate::observed::{Failures, ObservedStore, RETRY};
use crate::Error;

/// The client refuses an `http://` endpoint unless told to allow it, and
/// then fails every call with a bare "builder error"; this says at start
/// which variable allows it.
fn refuse_plain_http_unless_allowed(builder: &AmazonS3Builder) -> object_store::Result<()> {
    use object_store::ClientConfigKey;
    let endpoint = builder
        .get_config_value(&AmazonS3ConfigKey::Endpoint)
        .unwrap_or_default();
    let allowed = builder
        .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if endpoint.starts_with("http://") && !allowed {
        return Err(object_store::Error::Generic {
            store: "S3",
            source: format!(
                "the endpoint {endpoint} is plain http://, which the client refuses: set AWS_ALLOW_HTTP=true (or [output.storage] allow_http = \"true\") to allow it"
            )
            .into(),
        });
    }
    Ok(())
}

/// The output root: a store and where in it the lake begins.
#[derive(Clone, Debug)]
pub(crate) struct Location {
    /// The root as a URL, ending in `/`; tables are folders below it.
    pub root: Url,
    /// The store that holds it. For buckets the store is the bucket, and
    /// object paths are the URL's path (as the Delta kernel resolves them).
    /// Every call through it that fails is logged and counted.
    pub store: Arc<DynObjectStore>,
    /// Store calls that failed since the lake was opened.
    pub failures: Failures,
}

/// Applies `[output.storage]` `options` to a store `builder` (each key
/// parsed as the store's config key, an unknown one named in the error),
/// then builds the store.
fn build<B, K, S>(
    builder: B,
    options: &BTreeMap<String, String>,
    with_config: impl Fn(B, K, &str) -> B,
    finish: impl FnOnce(B) -> object_store::Result<S>,
) -> Result<S, Error>
where
    K: std::str::FromStr<Err = object_store::Error>,
{
    let mut builder = builder;
    for (key, value) in options {
        let parsed: K = key
            .parse()
            .map_err(|e: object_store::Error| Error::Setting {
                key: format!("output.storage.{key}"),
                source: e.into(),
            })?;
        builder = with_config(builder, parsed, value);
    }
    finish(builder).map_err(|e| Error::Setting {
        key: "output.uri".into(),
        source: e.into(),
    })
}

impl Location {
    /// Parses `uri` (a local path, `file://`, `s3://`, `s3a://`, `gs://`,
    /// `az://`, `abfs://`, `abfss://`) and builds its store. `options` are
    /// the `[output.storage]` keys, named in errors as such.
    pub fn parse(uri: &str, options: &BTreeMap<String, String>) -> Result<Location, Error> {
        let root = root_url(uri)?;
        let store = store_at(&root, options)?;
        let failures = Failures::default();
        let store = Arc::new(ObservedStore::new(
            store,
            root.to_string(),
            failures.clone(),
        ));
        Ok(Location {
            root,
            store,
            failures,
        })
    }

    /// The URL of a table (or any folder) below the root, ending in `/`.
    pub fn folder(&self, name: &str) -> Url {
        self.root
            .join(&format!("{name}/"))
            .expect("a folder name joins onto the root")
    }

    /// The object path of `relative` (below the root) in the store.
    pub fn object_path(&self, relative: &str) -> ObjectPath {
        let url = self
            .root
            .join(relative)
            .expect("a relative path joins onto the root");
        ObjectPath::from_url_path(url.path()).expect("a URL path is a valid object path")
    }

    /// The root for people: a URL without credentials.
    pub fn display(&self) -> String {
        self.root.to_string()
    }
}

/// The output root as a URL ending in `/`: a local path (created if
/// missing, made absolute) or a URL.
fn root_url(uri: &str) -> Result<Url, Error> {
    let invalid = |key: String, message: String| Error::Config { key, message };
    let scheme = uri.split_once("://").map(|(scheme, _)| scheme);
    let root = match scheme {
        None | Some("file") => {
            let path = uri.strip_prefix("file://").unwrap_or(uri);
            std::fs::create_dir_all(path).map_err(|source| Error::Io {
                op: "creating output root",
                path: path.into(),
                source,
            })?;
            let absolute = std::fs::canonicalize(path).map_err(|source| Error::Io {
                op: "resolving output root",
                path: path.into(),
                source,
            })?;
            Url::from_directory_path(&absolute).map_err(|()| {
                invalid(
                    "output.uri".into(),
                    format!("{} is not an absolute path", absolute.display()),
                )
            })?
        }
        Some(_) => {
            let mut url = Url::parse(uri).map_err(|e| Error::Setting {
                key: "output.uri".into(),
                source: e.into(),
            })?;
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
            url
        }
    };
    Ok(root)
}

/// The object store of `root`, with the `[output.storage]` options.
fn store_at(root: &Url, options: &BTreeMap<String, String>) -> Result<Arc<DynObjectStore>, Error> {
    let invalid = |key: String, message: String| Error::Config { key, message };
    let store: Arc<DynObjectStore> = match root.scheme() {
        "file" => {
            if let Some(key) = options.keys().next() {
                return Err(invalid(
                    format!("output.storage.{key}"),
                    "a local output takes no storage options".into(),
                ));
            }
            Arc::new(LocalFileSystem::new())
        }
        "s3" | "s3a" => Arc::new(build(
            AmazonS3Builder::from_env()
                .with_url(root.as_str())
                .with_retry(RETRY),
            options,
            |b, key: AmazonS3ConfigKey, value| b.with_config(key, value),
            |b| {
                refuse_plain_http_unless_allowed(&b)?;
                b.build()
            },
        )?),
        "gs" => Arc::new(build(
            GoogleCloudStorageBuilder::from_env()
                .with_url(root.as_str())
                .with_retry(RETRY),
            options,
            |b, key: GoogleConfigKey, value| b.with_config(key, value),
            GoogleCloudStorageBuilder::build,
        )?),
        "az" | "abfs" | "abfss" | "azure" => Arc::new(build(
            MicrosoftAzureBuilder::from_env()
                .with_url(root.as_str())
                .with_retry(RETRY),
            options,
            |b, key: AzureConfigKey, value| b.with_config(key, value),
            MicrosoftAzureBuilder::build,
        )?),
        other => {
            return Err(invalid(
                "output.uri".into(),
                format!(
                    "scheme `{other}://` is not supported; use a local path, file://, s3://, gs:// or az://"
                ),
            ))
        }
    };
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_http_endpoint_needs_aws_allow_http_and_says_so() {
        let mut options = BTreeMap::from([
            ("endpoint".to_string(), "http://127.0.0.1:9".to_string()),
            ("region".to_string(), "us-east-1".to_string()),
        ]);
        let error = Location::parse("s3://bucket/lake", &options)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("AWS_ALLOW_HTTP") && error.contains("output.uri"),
            "{error}"
        );
        options.insert("allow_http".into(), "true".into());
        assert!(Location::parse("s3://bucket/lake", &options).is_ok());
    }
}
