//! Durable puts, reads and deletes on the lake's storage.

use std::{
    io::Write,
    path::{Path as FsPath, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use object_store::{
    ObjectStore, ObjectStoreExt, aws::AmazonS3Builder, local::LocalFileSystem, memory::InMemory,
    path::Path as ObjectPath,
};
use thiserror::Error;
use url::Url;

use crate::{config::LakeConfig, error::ErrorKind};

#[derive(Debug, Error)]
pub enum LakeError {
    #[error("lake url {url:?} is not supported: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("lake I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("lake path: {0}")]
    Path(#[from] object_store::path::Error),
    #[error("lake object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("preparing a batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("in-flight marker {path} is corrupt: {source}")]
    Marker {
        path: String,
        source: serde_json::Error,
    },
}

impl LakeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            LakeError::BadUrl { .. } => ErrorKind::User,
            LakeError::Arrow(_) | LakeError::Parquet(_) => ErrorKind::Internal,
            _ => ErrorKind::External,
        }
    }
}

/// A lake's location and the store that reaches it.
#[derive(Debug, Clone)]
pub struct Lake {
    /// The store at the root of the URL's authority (the bucket, or `/`), as
    /// DataFusion registers it.
    store: Arc<dyn ObjectStore>,
    /// Base URL of the store, for DataFusion's object-store registry.
    store_url: Url,
    /// Path of the lake root inside `store`.
    prefix: ObjectPath,
    /// Local lakes bypass `object_store` for writes: it neither fsyncs the file
    /// nor its directory, and durability before commit is the whole contract.
    local_root: Option<PathBuf>,
    /// Tag columns this process has recorded ([`super::columns`]).
    recorded_columns: super::columns::Recorded,
}

impl Lake {
    pub fn open(config: &LakeConfig) -> Result<Self, LakeError> {
        let raw = config.url.trim();
        let bad = |reason: &str| LakeError::BadUrl {
            url: raw.to_owned(),
            reason: reason.to_owned(),
        };
        if raw.is_empty() {
            return Err(bad("empty"));
        }
        if !raw.contains("://") {
            return Self::local(FsPath::new(raw));
        }
        let url = Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| bad("not an absolute file path"))?;
                Self::local(&path)
            }
            "s3" => {
                let bucket = url.host_str().ok_or_else(|| bad("no bucket"))?;
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_allow_http(config.s3.allow_http);
                if let Some(endpoint) = &config.s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(region) = &config.s3.region {
                    builder = builder.with_region(region);
                }
                Ok(Lake {
                    store: Arc::new(builder.build()?),
                    store_url: Url::parse(&format!("s3://{bucket}"))
                        .map_err(|e| bad(&e.to_string()))?,
                    prefix: ObjectPath::from(url.path()),
                    local_root: None,
                    recorded_columns: Default::default(),
                })
            }
            "memory" => Ok(Lake {
                store: Arc::new(InMemory::new()),
                store_url: Url::parse("memory://").expect("static url"),
                prefix: ObjectPath::from(url.path()),
                local_root: None,
                recorded_columns: Default::default(),
            }),
            other => Err(bad(&format!(
                "scheme {other:?}; use a directory, file://, s3:// or memory://"
            ))),
        }
    }

    fn local(path: &FsPath) -> Result<Self, LakeError> {
        std::fs::create_dir_all(path).map_err(|source| LakeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let root = path.canonicalize().map_err(|source| LakeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Lake {
            store: Arc::new(LocalFileSystem::new()),
            store_url: Url::parse("file:///").expect("static url"),
            prefix: ObjectPath::from_filesystem_path(&root)?,
            local_root: Some(root),
            recorded_columns: Default::default(),
        })
    }

    /// Where the lake is, for people: a directory or a URL.
    pub fn describe(&self) -> String {
        match &self.local_root {
            Some(root) => root.display().to_string(),
            None => format!("{}{}", self.store_url, self.prefix),
        }
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The store as queries should see it: without the data files a
    /// compaction has merged but not yet deleted.
    pub fn readable_store(&self) -> Arc<dyn ObjectStore> {
        use super::readable::CoveredFilesHidden;
        match self.local_root {
            // The same store (rooted at `/`), typed so reads can go around
            // its blocking pool.
            Some(_) => Arc::new(CoveredFilesHidden::local(Arc::new(LocalFileSystem::new()))),
            None => Arc::new(CoveredFilesHidden::new(self.store.clone())),
        }
    }

    pub(super) fn recorded_columns(&self) -> &super::columns::Recorded {
        &self.recorded_columns
    }

    pub fn store_url(&self) -> &Url {
        &self.store_url
    }

    /// URL of a directory of the lake, as DataFusion's listing tables take it.
    pub fn dir_url(&self, relative: &str) -> String {
        let mut base = self.store_url.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let prefix = self.prefix.as_ref();
        if !prefix.is_empty() {
            base.push_str(prefix);
            base.push('/');
        }
        format!("{base}{relative}/")
    }

    fn object_path(&self, relative: &str) -> ObjectPath {
        self.prefix
            .parts()
            .chain(ObjectPath::from(relative).parts())
            .collect()
    }

    /// Stores `bytes` at `relative` so that, when this returns, the object
    /// survives a crash of this process and of the machine. Readers see the old
    /// object or the new one, never a part.
    pub async fn put_durable(&self, relative: &str, bytes: Bytes) -> Result<(), LakeError> {
        self.put(relative, bytes, CrashPoints::Armed).await
    }

    /// [`Self::put_durable`] without its crash points, for the column record
    /// ([`super::columns`]): how many markers a flush writes depends on the
    /// tags it meets first, and the crash tests count arrivals at the
    /// points to pick a flush's first data file. A marker killed before its
    /// rename leaves a temporary the record's readers ignore, and its flush
    /// fails before any data file is written.
    pub(super) async fn put_marker(&self, relative: &str, bytes: Bytes) -> Result<(), LakeError> {
        self.put(relative, bytes, CrashPoints::Off).await
    }

    async fn put(
        &self,
        relative: &str,
        bytes: Bytes,
        points: CrashPoints,
    ) -> Result<(), LakeError> {
        match &self.local_root {
            Some(root) => {
                let path = root.join(relative);
                tokio::task::spawn_blocking(move || write_fsync_rename(&path, &bytes, points))
                    .await
                    .expect("durable write task panicked")
            }
            None => {
                self.store
                    .put(&self.object_path(relative), bytes.into())
                    .await?;
                Ok(())
            }
        }
    }

    /// Reads an object, `None` if absent.
    pub async fn get(&self, relative: &str) -> Result<Option<Bytes>, LakeError> {
        match self.store.get(&self.object_path(relative)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under `relative`, recursively: its path relative to the
    /// lake root and its size. An absent directory lists nothing.
    pub async fn list(&self, relative: &str) -> Result<Vec<(String, u64)>, LakeError> {
        Ok(self
            .list_with_times(relative)
            .await?
            .into_iter()
            .map(|(path, size, _)| (path, size))
            .collect())
    }

    /// [`Lake::list`] with each object's last modification, in epoch ms.
    pub async fn list_with_times(
        &self,
        relative: &str,
    ) -> Result<Vec<(String, u64, i64)>, LakeError> {
        use futures::TryStreamExt;
        if let Some(root) = &self.local_root
            && !root.join(relative).exists()
        {
            return Ok(Vec::new());
        }
        let objects: Vec<_> = self
            .store
            .list(Some(&self.object_path(relative)))
            .try_collect()
            .await?;
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let parts: Vec<_> = meta.location.prefix_match(&self.prefix)?.collect();
                let path = parts
                    .iter()
                    .map(|p| p.as_ref())
                    .collect::<Vec<_>>()
                    .join("/");
                Some((path, meta.size, meta.last_modified.timestamp_millis()))
            })
            .collect())
    }

    /// The row count in a Parquet file's footer: two ranged reads, no data.
    pub async fn parquet_rows(&self, relative: &str, size: u64) -> Result<u64, LakeError> {
        use parquet::{errors::ParquetError, file::metadata::ParquetMetaDataReader};
        let path = self.object_path(relative);
        let bad =
            |what: &str| LakeError::Parquet(ParquetError::General(format!("{relative}: {what}")));
        // A file ends with the footer's length (4 bytes, little-endian) and
        // the magic `PAR1`.
        let tail = self
            .store
            .get_range(
                &path,
                size.checked_sub(8).ok_or_else(|| bad("too short"))?..size,
            )
            .await?;
        if &tail[4..] != b"PAR1" {
            return Err(bad("not a Parquet file"));
        }
        let footer = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
        let start = (size - 8)
            .checked_sub(footer)
            .ok_or_else(|| bad("footer longer than the file"))?;
        let metadata = self.store.get_range(&path, start..size - 8).await?;
        let metadata = ParquetMetaDataReader::decode_metadata(&metadata)?;
        Ok(u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0))
    }

    /// Removes the local directory `relative` and then its parent, each only
    /// if empty. Object stores have no directories: nothing to do there.
    pub async fn remove_empty_dirs(&self, relative: &str) -> Result<(), LakeError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let dir = root.join(relative);
        for dir in [Some(dir.as_path()), dir.parent()].into_iter().flatten() {
            if dir == root.as_path() {
                break;
            }
            // Not empty (or already gone): leave it.
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Deletes an object; an absent one is fine.
    pub async fn delete(&self, relative: &str) -> Result<(), LakeError> {
        match self.store.delete(&self.object_path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes what a writer killed before its rename left of `relative`
    /// (its temporary files, whatever process wrote them); returns how many.
    /// Object stores put whole objects and leave none.
    pub async fn delete_temporaries(&self, relative: &str) -> Result<usize, LakeError> {
        let Some(root) = &self.local_root else {
            return Ok(0);
        };
        let path = root.join(relative);
        tokio::task::spawn_blocking(move || {
            let io = |source| LakeError::Io {
                path: path.display().to_string(),
                source,
            };
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                return Ok(0);
            };
            let prefix = temporary_prefix(&name.to_string_lossy());
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(io(e)),
            };
            let mut deleted = 0;
            for entry in entries {
                let entry = entry.map_err(io)?;
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => deleted += 1,
                        // Renamed or swept meanwhile: gone either way.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(e)),
                    }
                }
            }
            Ok(deleted)
        })
        .await
        .expect("temporary sweep task panicked")
    }
}

/// Whether a local write passes the `write.*` crash points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrashPoints {
    Armed,
    Off,
}

/// The name a file of the lake has while it is written, less the writer's
/// process id and write number that end it.
fn temporary_prefix(file_name: &str) -> String {
    format!(".{file_name}.tmp-")
}

/// Write to a temporary name, fsync it, rename over the target, fsync the
/// directory: the POSIX recipe for an atomic, durable replace. The temporary
/// name does not end in `.parquet`, so readers listing the table never see it.
fn write_fsync_rename(path: &FsPath, bytes: &[u8], points: CrashPoints) -> Result<(), LakeError> {
    let crash_point = |name| {
        if points == CrashPoints::Armed {
            crate::crash::point(name)
        }
    };
    let io = |source| LakeError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path.parent().expect("lake paths have a parent");
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(io)?;
    let file_name = path.file_name().expect("lake paths name a file");
    // Unique per write, so two tasks of one process writing the same object
    // at once (a flush and a compaction recording one column) each rename
    // their own complete file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        "{}{}-{}",
        temporary_prefix(&file_name.to_string_lossy()),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    crash_point("write.before_rename");
    std::fs::rename(&tmp, path).map_err(io)?;
    crash_point("write.before_dir_sync");
    sync_dir(dir).map_err(io)?;
    if created {
        // A new hour directory must itself be durable in its parents.
        let mut parent = dir.parent();
        for _ in 0..2 {
            if let Some(p) = parent {
                sync_dir(p).map_err(io)?;
                parent = p.parent();
            }
        }
    }
    Ok(())
}

fn sync_dir(dir: &FsPath) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_put_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            url: dir.path().join("lake").display().to_string(),
            ..Default::default()
        })
        .unwrap();
        lake.put_durable("a/b/c.json", Bytes::from_static(b"one"))
            .await
            .unwrap();
        lake.put_durable("a/b/c.json", Bytes::from_static(b"two"))
            .await
            .unwrap();
        assert_eq!(lake.get("a/b/c.json").await.unwrap().unwrap(), "two");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("lake/a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["c.json"], "no temporary file stays behind");
        lake.delete("a/b/c.json").await.unwrap();
        lake.delete("a/b/c.json").await.unwrap();
        assert!(lake.get("a/b/c.json").await.unwrap().is_none());
        assert!(lake.dir_url("metrics").starts_with("file:///"));
        assert!(lake.dir_url("metrics").ends_with("/lake/metrics/"));
    }

    #[test]
    fn refuses_unknown_schemes() {
        let err = Lake::open(&LakeConfig {
            url: "ftp://x/y".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("ftp"), "{err}");
    }
}
