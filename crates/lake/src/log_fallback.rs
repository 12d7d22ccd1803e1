//! The store as seen without the tables' log checkpoints, for reading a
//! table whose checkpoint is damaged: the kernel then replays the JSON
//! commits instead (those a log expiry has not deleted yet). Only reads
//! go through it; the lake writes through the store itself.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, DynObjectStore, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// Whether `path` is a log checkpoint, or the hint that points at one.
fn is_log_checkpoint(path: &Path) -> bool {
    let text = path.as_ref();
    text.contains("_delta_log/")
        && path
            .filename()
            .is_some_and(|name| name.contains(".checkpoint.") || name == "_last_checkpoint")
}

fn not_found(path: &Path) -> object_store::Error {
    object_store::Error::NotFound {
        path: path.to_string(),
        source: "hidden: the log is read without its checkpoints".into(),
    }
}

/// A store whose tables' logs have no checkpoints.
#[derive(Debug)]
pub(crate) struct WithoutLogCheckpoints {
    inner: Arc<DynObjectStore>,
}

impl WithoutLogCheckpoints {
    pub fn new(inner: Arc<DynObjectStore>) -> Self {
        WithoutLogCheckpoints { inner }
    }
}

impl fmt::Display for WithoutLogCheckpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} without log checkpoints", self.inner)
    }
}

fn visible(
    stream: BoxStream<'static, object_store::Result<ObjectMeta>>,
) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
    stream
        .filter(|item| {
            let keep = item
                .as_ref()
                .map_or(true, |meta| !is_log_checkpoint(&meta.location));
            std::future::ready(keep)
        })
        .boxed()
}

#[async_trait]
impl ObjectStore for WithoutLogCheckpoints {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if is_log_checkpoint(location) {
            return Err(not_found(location));
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        if is_log_checkpoint(location) {
            return Err(not_found(location));
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        visible(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        visible(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut listing = self.inner.list_with_delimiter(prefix).await?;
        listing
            .objects
            .retain(|meta| !is_log_checkpoint(&meta.location));
        Ok(listing)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_log_s_checkpoints_are_hidden() {
        let hidden = |p: &str| is_log_checkpoint(&Path::from(p));
        assert!(hidden(
            "lake/events/_delta_log/00000000000000000010.checkpoint.parquet"
        ));
        assert!(hidden("lake/events/_delta_log/_last_checkpoint"));
        assert!(!hidden("lake/events/_delta_log/00000000000000000010.json"));
        assert!(!hidden(
            "lake/_newsflow/shards/00000/checkpoint-00000000000000000003"
        ));
        assert!(!hidden(
            "lake/events/event_type=x/part-00000-1.zstd.parquet"
        ));
    }
}
