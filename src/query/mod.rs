//! Batch SQL over the lake with DataFusion: one table, `metrics`.
//!
//! The table is the lake's `metrics/` directory with its hive partitions
//! `date` and `hour` as columns. Time predicates on `time` are turned into
//! partition predicates ([`pruning`]) so a query over an hour reads that hour's
//! files only.

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
            .register_object_store(lake.store_url(), lake.store());
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

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }
}
