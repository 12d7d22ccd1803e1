//! The object store as the lake calls it: every call that fails, after the
//! client's own bounded retries ([`RETRY`]), is logged with the store and
//! the error and counted, so an outage shows where it happens instead of
//! only as a flush that failed a minute later. Expected answers (not
//! found, already exists, a failed precondition) are outcomes, not
//! failures, and are neither logged nor counted.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, DynObjectStore, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RetryConfig,
};

/// How the cloud stores' clients retry: for at most 20 s from a call's
/// first request (object_store's default is 3 minutes), so that a call is
/// bounded by that plus one request's timeout (30 s by default,
/// `[output.storage] timeout`), and an outage reaches the flush, and
/// `/readyz`, within a flush interval or two.
pub(crate) const RETRY: RetryConfig = RetryConfig {
    backoff: object_store::BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(5),
        base: 2.0,
    },
    max_retries: 10,
    retry_timeout: Duration::from_secs(20),
};

/// Store calls that failed, shared by the lake's handles.
pub(crate) type Failures = Arc<AtomicU64>;

/// An object store whose failed calls are logged and counted.
#[derive(Debug)]
pub(crate) struct ObservedStore {
    inner: Arc<DynObjectStore>,
    /// The output root, for the log lines (no credentials in it).
    root: String,
    failures: Failures,
}

impl ObservedStore {
    pub fn new(inner: Arc<DynObjectStore>, root: String, failures: Failures) -> Self {
        ObservedStore {
            inner,
            root,
            failures,
        }
    }

    /// Passes `result` on, logging and counting it if it is a failure.
    fn observe<T>(
        &self,
        operation: &'static str,
        result: object_store::Result<T>,
    ) -> object_store::Result<T> {
        if let Err(error) = &result {
            self.failed(operation, error);
        }
        result
    }

    fn failed(&self, operation: &'static str, error: &object_store::Error) {
        use object_store::Error::*;
        if matches!(
            error,
            NotFound { .. } | AlreadyExists { .. } | Precondition { .. } | NotModified { .. }
        ) {
            return;
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(store = self.root, operation, %error, "an object-store call failed");
    }

    /// `stream` with each failed item logged and counted.
    fn observe_stream<T: Send + 'static>(
        &self,
        operation: &'static str,
        stream: BoxStream<'static, object_store::Result<T>>,
    ) -> BoxStream<'static, object_store::Result<T>> {
        let observer = ObservedStore {
            inner: self.inner.clone(),
            root: self.root.clone(),
            failures: self.failures.clone(),
        };
        stream
            .map(move |item| observer.observe(operation, item))
            .boxed()
    }
}

impl fmt::Display for ObservedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for ObservedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await;
        self.observe("put", result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let result = self.inner.put_multipart_opts(location, opts).await;
        self.observe("put_multipart", result)
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let result = self.inner.get_opts(location, options).await;
        self.observe("get", result)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let result = self.inner.get_ranges(location, ranges).await;
        self.observe("get", result)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.observe_stream("delete", self.inner.delete_stream(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.observe_stream("list", self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.observe_stream("list", self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let result = self.inner.list_with_delimiter(prefix).await;
        self.observe("list", result)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let result = self.inner.copy_opts(from, to, options).await;
        self.observe("copy", result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn failed_calls_are_counted_and_expected_answers_are_not() {
        let failures = Failures::default();
        let store = ObservedStore::new(
            Arc::new(InMemory::new()),
            "memory:///".into(),
            failures.clone(),
        );
        let path = Path::from("a");
        assert!(store.get(&path).await.is_err(), "not found");
        store
            .put(&path, PutPayload::from_static(b"x"))
            .await
            .unwrap();
        let create = PutOptions {
            mode: object_store::PutMode::Create,
            ..PutOptions::default()
        };
        assert!(store
            .put_opts(&path, PutPayload::from_static(b"y"), create)
            .await
            .is_err());
        assert_eq!(
            failures.load(Ordering::Relaxed),
            0,
            "outcomes, not failures"
        );
        let range = GetOptions {
            range: Some(object_store::GetRange::Bounded(5..9)),
            ..GetOptions::default()
        };
        assert!(
            store.get_opts(&path, range).await.is_err(),
            "a range past the end"
        );
        assert_eq!(failures.load(Ordering::Relaxed), 1);
    }
}
