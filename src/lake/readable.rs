//! The lake as klaxon's readers see it: covered data files (inputs of a
//! compaction whose merged file already exists, see [`super::files`]) are
//! left out of every listing, so a query that runs while a compaction is
//! between writing its output and deleting its inputs, or after one was
//! killed there, still reads each row once.
//!
//! DataFusion finds files through the object store's listings, so the filter
//! sits there: this store passes everything through and drops covered files
//! from `list` and `list_with_delimiter`.

use std::{collections::HashMap, fmt, ops::Range, os::unix::fs::FileExt, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    local::LocalFileSystem, path::Path,
};

use super::{
    files::{DataFile, split_covered},
    layout::TABLE_DIR,
};

/// Wraps a store so that listings leave covered data files out.
#[derive(Debug)]
pub(super) struct CoveredFilesHidden {
    inner: Arc<dyn ObjectStore>,
    /// The same store, when the lake is a local directory: its column
    /// chunks are read in place (see `get_ranges`).
    local: Option<Arc<LocalFileSystem>>,
}

impl CoveredFilesHidden {
    pub(super) fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner, local: None }
    }

    pub(super) fn local(store: Arc<LocalFileSystem>) -> Self {
        Self {
            inner: store.clone(),
            local: Some(store),
        }
    }
}

impl fmt::Display for CoveredFilesHidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CoveredFilesHidden({})", self.inner)
    }
}

/// The objects of a listing minus the covered data files.
fn without_covered(objects: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    let mut files = Vec::new();
    let mut by_path = HashMap::new();
    let mut others = Vec::new();
    for meta in objects {
        match table_relative(meta.location.as_ref()).and_then(|p| DataFile::parse(p, meta.size)) {
            Some(mut file) => {
                file.modified_ms = meta.last_modified.timestamp_millis();
                by_path.insert(file.path.clone(), meta);
                files.push(file);
            }
            None => others.push(meta),
        }
    }
    let (kept, _covered) = split_covered(files);
    others.extend(kept.into_iter().filter_map(|f| by_path.remove(&f.path)));
    others
}

/// The part of a store path from the table directory on.
fn table_relative(location: &str) -> Option<&str> {
    let marker = format!("{TABLE_DIR}/date=");
    let at = location.rfind(&marker)?;
    (at == 0 || location.as_bytes()[at - 1] == b'/').then(|| &location[at..])
}

#[async_trait]
impl ObjectStore for CoveredFilesHidden {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    // Forwarded, not left to the trait's default: the inner store reads many
    // ranges of one file at once (Parquet column chunks), which the default
    // does range by range.
    //
    // A local lake's ranges are read right here, on the query's thread:
    // `LocalFileSystem` hands every read to tokio's blocking pool, and on a
    // scan of thousands of small files that hand-off (a thread woken, a
    // task switched, per file) costs more than the read, which the page
    // cache mostly answers. Scans are CPU work on the same threads anyway.
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let Some(local) = &self.local else {
            return self.inner.get_ranges(location, ranges).await;
        };
        let path = local.path_to_filesystem(location)?;
        let io = |source: std::io::Error| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: format!("reading {}: {source}", path.display()).into(),
        };
        let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
            // Deleted since the listing (a compaction's grace ended): the
            // error a query reports as a file not found.
            std::io::ErrorKind::NotFound => object_store::Error::NotFound {
                path: path.display().to_string(),
                source: e.into(),
            },
            _ => io(e),
        })?;
        // A corrupt footer can name any range: check it against the file
        // before allocating for it.
        let len = file.metadata().map_err(io)?.len();
        ranges
            .iter()
            .map(|range| {
                if range.start > range.end || range.end > len {
                    return Err(io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("range {range:?} outside the file's {len} bytes"),
                    )));
                }
                let mut buffer = vec![0; (range.end - range.start) as usize];
                file.read_exact_at(&mut buffer, range.start).map_err(io)?;
                Ok(Bytes::from(buffer))
            })
            .collect()
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        // Coverage is decided among the files of one directory, so the whole
        // listing is gathered first.
        let listing = self.inner.list(prefix);
        futures::stream::once(async move { listing.try_collect::<Vec<_>>().await })
            .map_ok(|objects| futures::stream::iter(without_covered(objects).into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result.objects = without_covered(result.objects);
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, memory::InMemory};

    use super::*;
    use crate::lake::layout::data_file;

    #[tokio::test]
    async fn local_reads_in_place_return_the_ranges_and_refuse_any_beyond_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.parquet");
        std::fs::write(&file, b"0123456789").unwrap();
        let store = CoveredFilesHidden::local(Arc::new(LocalFileSystem::new()));
        let path = Path::from_filesystem_path(&file).unwrap();
        let got = store.get_ranges(&path, &[2..5, 0..1, 9..10]).await.unwrap();
        assert_eq!(got, [&b"234"[..], b"0", b"9"]);
        // What a corrupt footer could ask for: an error, not an allocation.
        let huge = 0..u64::MAX;
        let err = store.get_ranges(&path, &[huge]).await.unwrap_err();
        assert!(
            err.to_string().contains("outside the file's 10 bytes"),
            "{err}"
        );
        let gone = Path::from(format!(
            "{}/gone.parquet",
            Path::from_filesystem_path(dir.path()).unwrap()
        ));
        let first = 0..1;
        assert!(matches!(
            store.get_ranges(&gone, &[first]).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn listings_leave_out_covered_files_and_nothing_else() {
        let inner = Arc::new(InMemory::new());
        let hour = 490_000;
        let names = [
            data_file("m", 0, 0, 99, hour),
            data_file("m", 0, 100, 199, hour),
            data_file("m", 0, 0, 199, hour),
            data_file("m", 0, 200, 299, hour),
        ];
        for name in &names {
            let path = Path::from(format!("lake/{name}"));
            inner
                .put(&path, PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
        inner
            .put(
                &Path::from("lake/_klaxon/inflight/m/0.json"),
                PutPayload::from_static(b"{}"),
            )
            .await
            .unwrap();
        let store = CoveredFilesHidden::new(inner);
        let mut listed: Vec<String> = store
            .list(Some(&Path::from("lake")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        listed.sort();
        let mut want = vec![
            format!("lake/{}", names[2]),
            format!("lake/{}", names[3]),
            "lake/_klaxon/inflight/m/0.json".to_owned(),
        ];
        want.sort();
        assert_eq!(listed, want);
        let dir = Path::from(format!("lake/{}", names[0].rsplit_once('/').unwrap().0));
        let mut in_dir: Vec<String> = store
            .list_with_delimiter(Some(&dir))
            .await
            .unwrap()
            .objects
            .into_iter()
            .map(|m| m.location.to_string())
            .collect();
        in_dir.sort();
        let mut want_in_dir = vec![format!("lake/{}", names[2]), format!("lake/{}", names[3])];
        want_in_dir.sort();
        assert_eq!(in_dir, want_in_dir);
    }
}
