//! Batch SQL over the lake with DataFusion: one table, `metrics`.
//!
//! The table is the lake's `metrics/` directory with its hive partitions
//! `date` and `hour` as columns. Time predicates on `time` are turned into
//! partition predicates ([`pruning`]) so a query over an hour reads that hour's
//! files only.
//!
//! [`QueryEngine::sql`] runs anything DataFusion runs, `COPY ... TO` any
//! path and `CREATE EXTERNAL TABLE` on any file included: that is `klaxon
//! query`, for the lake's owner at a shell. SQL from a remote caller (an HTTP
//! console) goes through [`QueryEngine::sql_read_only`] instead.

mod output;
mod pruning;

use std::sync::Arc;

use arrow::{
    array::RecordBatch,
    datatypes::{DataType, Schema, SchemaRef},
};
use datafusion::{
    catalog::TableProvider,
    datasource::{
        file_format::parquet::ParquetFormat,
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
    },
    error::DataFusionError,
    execution::context::SQLOptions,
    prelude::{SessionConfig, SessionContext},
};
use thiserror::Error;

pub use output::{OutputFormat, write_batches};
pub use pruning::TimePrunedTable;

use crate::{
    error::ErrorKind,
    lake::{Lake, LakeError, columns, layout::TABLE_DIR},
    points::base_fields,
};

#[derive(Debug, Error)]
pub enum QueryError {
    #[error("query failed: {0}")]
    DataFusion(#[from] DataFusionError),
    #[error("reading the lake's columns: {0}")]
    Lake(#[from] LakeError),
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
            QueryError::Output(_) => ErrorKind::External,
        }
    }
}

/// A DataFusion session with the lake registered as `metrics`.
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
        let config = SessionConfig::new()
            .with_information_schema(true)
            // Tag columns come and go between files; merge their schemas.
            .set_bool("datafusion.execution.parquet.pushdown_filters", true);
        let ctx = SessionContext::new_with_config(config);
        ctx.runtime_env()
            .register_object_store(lake.store_url(), lake.readable_store());
        let url = ListingTableUrl::parse(lake.dir_url(TABLE_DIR))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![
                ("date".to_owned(), DataType::Utf8),
                ("hour".to_owned(), DataType::Utf8),
            ]);
        let schema = table_schema(lake, &ctx, &options, &url).await?;
        let table = ListingTable::try_new(
            ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(schema),
        )?;
        let schema = table.schema();
        ctx.register_table("metrics", Arc::new(TimePrunedTable::new(Arc::new(table))))?;
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

/// The `metrics` table's columns (partition columns aside): from the lake's
/// column markers when they cover it, else read from every file's footer and
/// then recorded, so the next query skips that read ([`columns`]).
async fn table_schema(
    lake: &Lake,
    ctx: &SessionContext,
    options: &ListingOptions,
    url: &ListingTableUrl,
) -> Result<SchemaRef, QueryError> {
    let fixed = base_fields();
    if let Some(schema) = columns::recorded_schema(lake, TABLE_DIR, &fixed).await? {
        return Ok(Arc::new(schema));
    }
    // An empty lake has no files to infer from: it still has the base
    // columns, and nothing to backfill.
    let inferred = match options.infer_schema(&ctx.state(), url).await {
        Ok(schema) if !schema.fields().is_empty() => schema,
        _ => return Ok(Arc::new(Schema::new(fixed))),
    };
    // Best effort: a reader without write access still answers, by
    // inferring again next time.
    if let Err(e) = columns::backfill(lake, TABLE_DIR, &fixed, &inferred).await {
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
    use arrow::array::AsArray;

    use super::*;
    use crate::config::LakeConfig;

    async fn engine(dir: &std::path::Path) -> QueryEngine {
        let lake = Lake::open(&LakeConfig {
            url: dir.join("lake").display().to_string(),
            ..Default::default()
        })
        .unwrap();
        QueryEngine::open(&lake).await.unwrap()
    }

    /// Flushes one point with `tags` as offset `offset` of partition 0.
    async fn flush(lake: &Lake, offset: i64, tags: &[(&str, &str)]) {
        use crate::{
            lake::writer::{FlushRange, write_flush},
            points::PointBatchBuilder,
        };
        let mut batch = PointBatchBuilder::default();
        batch.push("cpu", 1_764_000_000_000 + offset, 1.0, tags);
        let range = FlushRange {
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
        let lake = Lake::open(&LakeConfig {
            url: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        flush(&lake, 0, &[("service", "checkout")]).await;
        // A file from before column markers existed: no marker for `zone`.
        flush(&lake, 1, &[("zone", "eu")]).await;
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
