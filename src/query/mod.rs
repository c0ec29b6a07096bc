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

use arrow::{array::RecordBatch, datatypes::DataType};
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
    lake::{Lake, layout::TABLE_DIR},
    points::base_fields,
};

#[derive(Debug, Error)]
pub enum QueryError {
    #[error("query failed: {0}")]
    DataFusion(#[from] DataFusionError),
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
            QueryError::Output(_) => ErrorKind::External,
        }
    }
}

/// A DataFusion session with the lake registered as `metrics`.
pub struct QueryEngine {
    ctx: SessionContext,
    /// The `metrics` table's schema, tags and partition columns included.
    schema: arrow::datatypes::SchemaRef,
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
        let state = ctx.state();
        // An empty lake has no files to infer from: it still has the base columns.
        let schema = match options.infer_schema(&state, &url).await {
            Ok(schema) if !schema.fields().is_empty() => schema,
            _ => Arc::new(arrow::datatypes::Schema::new(base_fields())),
        };
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
    pub fn rule_schema(&self) -> arrow::datatypes::SchemaRef {
        let fields: Vec<_> = self
            .schema
            .fields()
            .iter()
            .filter(|f| f.name() != "date" && f.name() != "hour")
            .cloned()
            .collect();
        Arc::new(arrow::datatypes::Schema::new(fields))
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

/// What [`QueryEngine::sql_read_only`] allows: queries, nothing else.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

#[cfg(test)]
mod tests {
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
