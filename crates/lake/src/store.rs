//! The object store as the lake uses it: blocking calls from the flush
//! threads and the run loop onto the lake's own runtime, and create-only
//! writes (nothing in the lake is ever overwritten). Only maintenance
//! deletes, and only what no table log and no shard can need any more
//! (`crate::maintenance`).

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

use crate::location::Location;
use crate::Error;

/// The output root's store, with the runtime its calls run on.
pub(crate) struct Store {
    pub location: Location,
    handle: tokio::runtime::Handle,
}

/// Why a create-only write did not happen.
pub(crate) enum CreateError {
    /// Something is there already.
    Exists,
    /// The store failed.
    Store(Error),
}

impl Store {
    pub fn new(location: Location, handle: tokio::runtime::Handle) -> Store {
        Store { location, handle }
    }

    /// The object path of `relative` (below the root).
    pub fn path(&self, relative: &str) -> ObjectPath {
        self.location.object_path(relative)
    }

    /// Creates `path` with `bytes`, failing if it exists.
    pub fn create(
        &self,
        path: ObjectPath,
        bytes: impl Into<PutPayload>,
    ) -> Result<(), CreateError> {
        let payload = bytes.into();
        let shown = path.to_string();
        let store = self.location.store.clone();
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let result = self
            .handle
            .block_on(async move { store.put_opts(&path, payload, options).await });
        match result {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(CreateError::Exists),
            Err(e) => Err(CreateError::Store(Error::Store {
                op: "writing",
                path: shown,
                source: e,
            })),
        }
    }

    /// Creates a file named for a sequence number its writer claimed: that
    /// it exists already breaks the claim protocol, and is reported so.
    pub fn create_claimed(
        &self,
        path: ObjectPath,
        bytes: impl Into<PutPayload>,
    ) -> Result<(), Error> {
        let shown = path.to_string();
        self.create(path, bytes).map_err(|e| match e {
            CreateError::Exists => Error::Inconsistent(format!(
                "{shown} exists already although its sequence number was claimed by this writer"
            )),
            CreateError::Store(e) => e,
        })
    }

    /// Whether `path` exists.
    pub fn exists(&self, path: ObjectPath) -> Result<bool, Error> {
        let shown = path.to_string();
        let store = self.location.store.clone();
        match self.handle.block_on(async move { store.head(&path).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::Store {
                op: "asking for",
                path: shown,
                source: e,
            }),
        }
    }

    /// Reads `path` whole.
    pub fn get(&self, path: ObjectPath) -> Result<Vec<u8>, Error> {
        self.read(path, None)
    }

    /// Reads the first `len` bytes of `path` (all of it, if shorter).
    pub fn get_prefix(&self, path: ObjectPath, len: u64) -> Result<Vec<u8>, Error> {
        self.read(path, Some(GetRange::Bounded(0..len)))
    }

    fn read(&self, path: ObjectPath, range: Option<GetRange>) -> Result<Vec<u8>, Error> {
        let shown = path.to_string();
        let store = self.location.store.clone();
        let options = GetOptions {
            range,
            ..GetOptions::default()
        };
        let result = self.handle.block_on(async move {
            let got = store.get_opts(&path, options).await?;
            got.bytes().await
        });
        result.map(|b| b.to_vec()).map_err(|e| Error::Store {
            op: "reading",
            path: shown,
            source: e,
        })
    }

    /// The names of the objects directly below `prefix`, and whether it
    /// has sub-folders.
    pub fn list(&self, prefix: ObjectPath) -> Result<(Vec<String>, bool), Error> {
        let shown = prefix.to_string();
        let store = self.location.store.clone();
        let listing = self
            .handle
            .block_on(async move { store.list_with_delimiter(Some(&prefix)).await })
            .map_err(|e| Error::Store {
                op: "listing",
                path: shown,
                source: e,
            })?;
        let names = listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(String::from))
            .collect();
        Ok((names, !listing.common_prefixes.is_empty()))
    }

    /// The names of the objects directly below `prefix` that sort after
    /// `offset` (a full path below the same prefix).
    pub fn list_after(&self, prefix: ObjectPath, offset: ObjectPath) -> Result<Vec<String>, Error> {
        let shown = prefix.to_string();
        let store = self.location.store.clone();
        let listed = self
            .handle
            .block_on(async move {
                store
                    .list_with_offset(Some(&prefix), &offset)
                    .try_collect::<Vec<_>>()
                    .await
            })
            .map_err(|e| Error::Store {
                op: "listing",
                path: shown,
                source: e,
            })?;
        Ok(listed
            .iter()
            .filter_map(|o| o.location.filename().map(String::from))
            .collect())
    }

    /// Every object below `prefix`, at any depth, with its size and when
    /// it was last written.
    pub fn list_all(&self, prefix: ObjectPath) -> Result<Vec<ObjectMeta>, Error> {
        let shown = prefix.to_string();
        let store = self.location.store.clone();
        self.handle
            .block_on(async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await })
            .map_err(|e| Error::Store {
                op: "listing",
                path: shown,
                source: e,
            })
    }

    /// Deletes `path`; one that is gone already counts as deleted.
    pub fn delete(&self, path: ObjectPath) -> Result<(), Error> {
        let shown = path.to_string();
        let store = self.location.store.clone();
        match self
            .handle
            .block_on(async move { store.delete(&path).await })
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::Store {
                op: "deleting",
                path: shown,
                source: e,
            }),
        }
    }
}
