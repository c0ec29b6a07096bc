//! Batch SQL over the lake with DataFusion: the tables `metrics` (points)
//! and `incidents` (every incident's timeline, see [`crate::history`]).
//!
//! Each table is its directory in the lake with its hive partitions `date`
//! and `hour` as columns. Time predicates on `time` are turned into
//! partition predicates ([`pruning`]) so a query over an hour reads that hour's
//! files only.
//!
//! [`QueryEngine::sql`] runs anything DataFusion runs, `COPY ... TO` any
//! path and `CREATE EXTERNAL TABLE` on any file included: that is `klaxon
//! query`, for the lake's owner at a shell. SQL from a remote caller (an HTTP
//! console) goes through [`QueryEngine::sql_read_only`] instead.

mod output;
mod pruning;
pub mod values;

use std::sync::Arc;

use arrow::{
    array::RecordBatch,
    datatypes::{DataType, Field, Schema, SchemaRef},
};
use datafusion::{
    catalog::TableProvider,
    datasource::{
        file_format::parquet::ParquetFormat,
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
    },
    error::DataFusionError,
    execution::{
        SendableRecordBatchStream, cache::cache_manager::CacheManagerConfig, context::SQLOptions,
        runtime_env::RuntimeEnvBuilder,
    },
    prelude::{SessionConfig, SessionContext},
};
use object_store::ObjectStore;
use thiserror::Error;

pub use output::{OutputFormat, write_batches};
pub use pruning::TimePrunedTable;

use crate::{
    error::ErrorKind,
    history,
    lake::{
        Lake, LakeError, columns,
        layout::{INCIDENTS_DIR, TABLE_DIR},
    },
    points::base_fields,
};

#[derive(Debug, Error)]
pub enum QueryError {
    #[error("query failed: {0}")]
    DataFusion(#[from] DataFusionError),
    #[error("reading the lake's columns: {0}")]
    Lake(#[from] LakeError),
    #[error("reading a result: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("writing the result: {0}")]
    Output(String),
}

impl QueryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::DataFusion(
                DataFusionError::SQL(..)
                | DataFusionError::Plan(_)
                | DataFusionError::SchemaError(..),
            ) => ErrorKind::User,
            QueryError::DataFusion(_) => ErrorKind::External,
            QueryError::Lake(e) => e.kind(),
            QueryError::Arrow(_) => ErrorKind::Internal,
            QueryError::Output(_) => ErrorKind::External,
        }
    }
}

/// The table of points.
pub const METRICS: &str = "metrics";
/// The table of incident timelines.
pub const INCIDENTS: &str = "incidents";

/// A DataFusion session with the lake's tables registered.
pub struct QueryEngine {
    ctx: SessionContext,
    /// The `metrics` table's schema, tags and partition columns included.
    schema: SchemaRef,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish_non_exhaustive()
    }
}

impl QueryEngine {
    pub async fn open(lake: &Lake) -> Result<Self, QueryError> {
        Self::open_over(lake, lake.readable_store()).await
    }

    /// [`Self::open`] reading the lake's files through `store`.
    async fn open_over(lake: &Lake, store: Arc<dyn ObjectStore>) -> Result<Self, QueryError> {
        // DataFusion's own `DATAFUSION_*` variables tune the engine
        // (`DATAFUSION_EXECUTION_TARGET_PARTITIONS=8`); klaxon's settings
        // below win over them, but for statistics.
        let mut config = SessionConfig::from_env()?
            .with_information_schema(true)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true);
        // No per-file statistics at planning: they cost a summary of every
        // footer before the scan, which prunes row groups from the same
        // footers anyway. On 10,016 small files a whole-day scan takes 1.6 s
        // without them and 2.4 s with; only `count(*)` over uncompacted
        // files, answered from them, is faster with (1.1 against 1.4 s).
        if std::env::var_os("DATAFUSION_EXECUTION_COLLECT_STATISTICS").is_none() {
            config = config.set_bool("datafusion.execution.collect_statistics", false);
        }
        // No cache of listings: a missed one lists the whole table to serve
        // any prefix of it later, which undoes listing only the hours a query
        // asks for ([`pruning`]), and a kept one would hide new files from a
        // session that lives on.
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.runtime_env()
            .register_object_store(lake.store_url(), store);
        let schema = register_table(&ctx, lake, METRICS, TABLE_DIR, base_fields()).await?;
        register_table(
            &ctx,
            lake,
            INCIDENTS,
            INCIDENTS_DIR,
            history::fixed_fields(),
        )
        .await?;
        Ok(Self { ctx, schema })
    }

    /// The columns a rule sees: the lake's, without the partition columns
    /// (a rule's window is not a directory).
    pub fn rule_schema(&self) -> SchemaRef {
        let fields: Vec<_> = self
            .schema
            .fields()
            .iter()
            .filter(|f| f.name() != "date" && f.name() != "hour")
            .cloned()
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Runs one SQL statement and collects its result.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let frame = self.ctx.sql(sql).await?;
        Ok(frame.collect().await?)
    }

    /// Runs one SQL statement and hands its result out batch by batch, so
    /// a long read (a backtest's hour of points) is never held twice.
    pub async fn sql_stream(&self, sql: &str) -> Result<SendableRecordBatchStream, QueryError> {
        let frame = self.ctx.sql(sql).await?;
        Ok(frame.execute_stream().await?)
    }

    /// [`Self::sql`] for SQL from a remote caller: only queries run. DDL
    /// (`CREATE EXTERNAL TABLE` reads any file the process can), DML
    /// (`COPY ... TO` writes any path, `INSERT`) and statements (`SET`
    /// changes the session) are refused as a user error before anything runs.
    pub async fn sql_read_only(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let frame = self.ctx.sql_with_options(sql, read_only()).await?;
        Ok(frame.collect().await?)
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }
}

/// Registers the lake's directory `dir` as the table `name`, with its hive
/// partitions `date` and `hour` as columns and time pruning; returns its
/// schema.
async fn register_table(
    ctx: &SessionContext,
    lake: &Lake,
    name: &str,
    dir: &str,
    fixed: Vec<Field>,
) -> Result<SchemaRef, QueryError> {
    let url = ListingTableUrl::parse(lake.dir_url(dir))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![
            ("date".to_owned(), DataType::Utf8),
            ("hour".to_owned(), DataType::Utf8),
        ]);
    let schema = table_schema(lake, ctx, &options, &url, dir, fixed).await?;
    let table = ListingTable::try_new(
        ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(schema),
    )?;
    let schema = table.schema();
    ctx.register_table(name, Arc::new(TimePrunedTable::new(Arc::new(table))))?;
    Ok(schema)
}

/// A table's columns (partition columns aside): `fixed`, then the
/// open-ended ones (tags, labels) from the lake's column markers when they
/// cover it, else read from every file's footer and then recorded, so the
/// next query skips that read ([`columns`]).
async fn table_schema(
    lake: &Lake,
    ctx: &SessionContext,
    options: &ListingOptions,
    url: &ListingTableUrl,
    dir: &str,
    fixed: Vec<Field>,
) -> Result<SchemaRef, QueryError> {
    match columns::recorded_schema(lake, dir, &fixed).await {
        Ok(Some(schema)) => return Ok(Arc::new(schema)),
        Ok(None) => {}
        // Credentials that reach the table but not `_klaxon/`: read footers.
        Err(e) => {
            tracing::warn!(lake = %lake.describe(), error = %e, "could not read the lake's column record")
        }
    }
    // An empty lake has no files to infer from: it still has the base
    // columns, and nothing to backfill.
    let inferred = match options.infer_schema(&ctx.state(), url).await {
        Ok(schema) if !schema.fields().is_empty() => schema,
        _ => return Ok(Arc::new(Schema::new(fixed))),
    };
    // Tags in name order, as the record lists them, so `SELECT *` has one
    // column order whichever way the schema was found.
    let mut tags: Vec<_> = inferred
        .fields()
        .iter()
        .filter(|f| fixed.iter().all(|b| b.name() != f.name()))
        .cloned()
        .collect();
    tags.sort_by(|a, b| a.name().cmp(b.name()));
    let base = fixed.iter().map(|b| {
        inferred
            .field_with_name(b.name())
            .map_or_else(|_| Arc::new(b.clone()), |f| Arc::new(f.clone()))
    });
    let inferred = Arc::new(Schema::new(base.chain(tags).collect::<Vec<_>>()));
    // Best effort: a reader without write access still answers, by
    // inferring again next time.
    if let Err(e) = columns::backfill(lake, dir, &fixed, &inferred).await {
        tracing::warn!(lake = %lake.describe(), error = %e, "could not record the lake's columns");
    }
    Ok(inferred)
}

/// What [`QueryEngine::sql_read_only`] allows: queries, nothing else.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use arrow::array::AsArray;
    use futures::stream::BoxStream;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, path::Path,
    };

    use super::*;
    use crate::config::LakeConfig;

    fn lake_at(dir: &std::path::Path) -> Lake {
        Lake::open(&LakeConfig {
            url: dir.display().to_string(),
            ..Default::default()
        })
        .unwrap()
    }

    async fn engine(dir: &std::path::Path) -> QueryEngine {
        QueryEngine::open(&lake_at(&dir.join("lake")))
            .await
            .unwrap()
    }

    /// 2025-11-24T16:00Z.
    const AT: i64 = 1_764_000_000_000;

    /// Flushes one point with `tags` as offset `offset` of partition 0.
    async fn flush(lake: &Lake, offset: i64, tags: &[(&str, &str)]) {
        flush_at(lake, offset, AT + offset, tags).await
    }

    async fn flush_at(lake: &Lake, offset: i64, time_ms: i64, tags: &[(&str, &str)]) {
        use crate::{
            lake::writer::{FlushRange, write_flush},
            points::PointBatchBuilder,
        };
        let mut batch = PointBatchBuilder::default();
        batch.push("cpu", time_ms, 1.0, tags);
        let range = FlushRange {
            table: crate::lake::layout::TABLE_DIR,
            topic: "metrics".into(),
            partition: 0,
            first_offset: offset,
            last_offset: offset,
        };
        write_flush(lake, &range, batch.finish().unwrap(), 1024)
            .await
            .unwrap();
    }

    fn columns_of(engine: &QueryEngine) -> Vec<String> {
        engine
            .rule_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    #[tokio::test]
    async fn every_column_of_every_file_is_queryable_before_and_after_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_at(dir.path());
        // Files from before column markers existed, with tags in an order
        // the schema does not keep.
        flush(&lake, 0, &[("zone", "eu")]).await;
        flush(&lake, 1, &[("service", "checkout")]).await;
        std::fs::remove_dir_all(dir.path().join("_klaxon/columns")).unwrap();
        // The first query reads every footer and records what it found.
        let first = QueryEngine::open(&lake).await.unwrap();
        assert_eq!(
            columns_of(&first),
            ["time", "name", "value", "service", "zone"]
        );
        assert!(dir.path().join("_klaxon/columns/metrics/complete").exists());
        // A column that appears later is recorded by its writer.
        flush(&lake, 2, &[("host", "a"), ("service", "api")]).await;
        let later = QueryEngine::open(&lake).await.unwrap();
        assert_eq!(
            columns_of(&later),
            ["time", "name", "value", "host", "service", "zone"]
        );
        let rows = later
            .sql("SELECT count(zone), count(host), count(service), count(*) FROM metrics")
            .await
            .unwrap();
        let counts: Vec<i64> = rows[0]
            .columns()
            .iter()
            .map(|c| c.as_primitive::<arrow::datatypes::Int64Type>().value(0))
            .collect();
        assert_eq!(counts, [1, 1, 2, 3]);
    }

    #[tokio::test]
    async fn a_bounded_query_lists_only_the_hours_or_dates_it_covers() {
        use crate::points::MS_PER_HOUR;
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_at(dir.path());
        // 22:30 and 23:30 on the 24th, 00:30 and 01:30 on the 25th, and a
        // point ten days before.
        let half_past = |hours: i64| AT + hours * MS_PER_HOUR + MS_PER_HOUR / 2;
        let times = [half_past(6), half_past(7), half_past(8), half_past(9)];
        for (offset, time) in times.iter().enumerate() {
            flush_at(&lake, offset as i64, *time, &[]).await;
        }
        flush_at(&lake, 4, AT - 240 * MS_PER_HOUR, &[]).await;
        let listings = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::new(ListingsSeen {
            inner: lake.readable_store(),
            prefixes: listings.clone(),
        });
        let engine = QueryEngine::open_over(&lake, store).await.unwrap();
        let count = async |sql: &str| {
            listings.lock().unwrap().clear();
            let rows = engine.sql(sql).await.unwrap();
            let mut seen: Vec<String> = listings
                .lock()
                .unwrap()
                .iter()
                .map(|p| p.split("/metrics/").nth(1).unwrap_or("").to_owned())
                .collect();
            seen.sort();
            let n = rows[0]
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>();
            (n.value(0), seen)
        };
        // Across midnight: the two hours asked for, nothing else listed.
        assert_eq!(
            count(
                "SELECT count(*) FROM metrics WHERE time >= TIMESTAMP '2025-11-24T23:00:00Z' \
                 AND time < TIMESTAMP '2025-11-25T01:00:00Z'"
            )
            .await,
            (
                2,
                vec![
                    "date=2025-11-24/hour=23".to_owned(),
                    "date=2025-11-25/hour=00".to_owned()
                ]
            )
        );
        // Longer than a day: each date, whole.
        let (n, seen) = count(
            "SELECT count(*) FROM metrics WHERE time >= TIMESTAMP '2025-11-14T00:00:00Z' \
             AND time <= TIMESTAMP '2025-11-25T00:59:59.999Z'",
        )
        .await;
        assert_eq!(n, 4);
        assert_eq!(seen.len(), 12);
        assert_eq!(seen[0], "date=2025-11-14");
        assert_eq!(seen[11], "date=2025-11-25");
        // Unbounded: the table, once.
        assert_eq!(
            count("SELECT count(*) FROM metrics").await,
            (5, vec![String::new()])
        );
    }

    /// A store that notes the prefix of every listing.
    #[derive(Debug)]
    struct ListingsSeen {
        inner: Arc<dyn ObjectStore>,
        prefixes: Arc<Mutex<Vec<String>>>,
    }

    impl std::fmt::Display for ListingsSeen {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "ListingsSeen({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for ListingsSeen {
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
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.prefixes
                .lock()
                .unwrap()
                .push(prefix.map(|p| p.to_string()).unwrap_or_default());
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.prefixes
                .lock()
                .unwrap()
                .push(prefix.map(|p| p.to_string()).unwrap_or_default());
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }

        async fn rename_opts(
            &self,
            from: &Path,
            to: &Path,
            options: RenameOptions,
        ) -> object_store::Result<()> {
            self.inner.rename_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn read_only_sql_runs_queries_and_refuses_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        let secret = dir.path().join("secret.csv");
        std::fs::write(&secret, "a\nhunter2\n").unwrap();
        let engine = engine(dir.path()).await;
        let rows = engine
            .sql_read_only("SELECT count(*) FROM metrics")
            .await
            .unwrap();
        assert_eq!(rows[0].num_rows(), 1);
        let refused = [
            format!(
                "COPY (SELECT 1 AS a) TO '{}' STORED AS CSV",
                target.display()
            ),
            format!(
                "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
                secret.display()
            ),
            "CREATE TABLE t AS SELECT 1 AS a".to_owned(),
            "CREATE VIEW v AS SELECT 1 AS a".to_owned(),
            "INSERT INTO metrics (name, value) VALUES ('x', 1)".to_owned(),
            "DROP TABLE metrics".to_owned(),
            "SET datafusion.execution.batch_size = 1".to_owned(),
        ];
        for sql in &refused {
            let err = engine.sql_read_only(sql).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::User, "{sql}: {err}");
            assert!(err.to_string().contains("not supported"), "{sql}: {err}");
        }
        assert!(!target.exists(), "COPY wrote {}", target.display());
        assert!(
            engine.sql("SELECT * FROM leak").await.is_err(),
            "the external table was created"
        );
        assert!(
            engine.sql("SELECT * FROM metrics").await.is_ok(),
            "metrics dropped"
        );
        // The owner's path still does all of it.
        engine.sql(&refused[0]).await.unwrap();
        assert!(target.exists());
    }
}
