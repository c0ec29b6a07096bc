//! Which columns a table's files hold, known without reading their footers.
//!
//! A table's schema is the union of its files' columns: tags come and go
//! from point to point. Inferring that union reads the footer of every file
//! of the table, so opening a query over a month of compacted hours (3,000
//! files) or a day of flushes (35,000) costs one read per file before the
//! query prunes anything. Instead every writer records each open-ended column
//! (a tag) as a marker object under `_klaxon/columns/{table}/` before the
//! first data file holding it becomes visible, and a reader lists that one
//! directory.
//!
//! The markers are trusted only once `complete` sits among them. A reader
//! that finds no `complete` infers the schema from every footer, as before,
//! and then backfills: a marker per column it saw, then `complete`. Files
//! that appear after the backfill's listing were written by writers that
//! record first, so nothing is missed: a lake written before markers
//! existed is backfilled on its first query. Two things can still add a
//! file without its markers once `complete` exists, and each is answered by
//! deleting `complete` (the next query reads every footer again):
//! Parquet files copied into `metrics/` by another tool, and an ingest member
//! of an older klaxon still running beside a newer query.
//!
//! The directory only grows. Markers outlive the files that had their column
//! (retention leaves them): an old column stays in the schema, null in newer
//! rows. Deleting a marker is never needed and would hide its column if a
//! running writer has recorded it already and so does not again.
//!
//! A marker's name is the column's name in one path segment, every byte but
//! lower-case letters, digits, `-`, `_` and `.` escaped as `+XX`
//! (`tag=service`, `tag=k8s+2Fpod`, `tag=+48ost` for `Host`): object stores
//! and `object_store` reserve `%`, `#` and `/`, and `Host` and `host` must
//! stay two files on a case-insensitive file system. A name too long for a
//! file name is `sha256={hex}`. Either way the object holds the name itself.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use arrow::datatypes::{Field, Schema};
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

use super::{Lake, LakeError};
use crate::points::string_type;

/// Marks the recorded column list as covering every file of the table.
const COMPLETE: &str = "complete";
/// Longest encoded name kept readable; file systems allow 255 bytes.
const MAX_READABLE_NAME: usize = 200;

/// Bytes a marker name escapes: all but lower-case letters, digits, `-`,
/// `_`, `.`.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .add(b'A')
    .add(b'B')
    .add(b'C')
    .add(b'D')
    .add(b'E')
    .add(b'F')
    .add(b'G')
    .add(b'H')
    .add(b'I')
    .add(b'J')
    .add(b'K')
    .add(b'L')
    .add(b'M')
    .add(b'N')
    .add(b'O')
    .add(b'P')
    .add(b'Q')
    .add(b'R')
    .add(b'S')
    .add(b'T')
    .add(b'U')
    .add(b'V')
    .add(b'W')
    .add(b'X')
    .add(b'Y')
    .add(b'Z');

fn dir(table: &str) -> String {
    format!("_klaxon/columns/{table}")
}

/// The marker object of column `name`, relative to the lake root.
fn marker(table: &str, name: &str) -> String {
    // Percent-encoding never leaves a `%` of the input unescaped, so every
    // `%` it writes can become `+` and back.
    let encoded = utf8_percent_encode(name, ESCAPED)
        .to_string()
        .replace('%', "+");
    if encoded.len() <= MAX_READABLE_NAME {
        format!("{}/tag={encoded}", dir(table))
    } else {
        format!(
            "{}/sha256={:x}",
            dir(table),
            Sha256::digest(name.as_bytes())
        )
    }
}

/// The column a readable marker's name spells.
fn decode(encoded: &str) -> String {
    percent_decode_str(&encoded.replace('+', "%"))
        .decode_utf8_lossy()
        .into_owned()
}

/// Columns this process has recorded already, per table, so a writer puts
/// each marker once rather than once per file.
#[derive(Debug, Default, Clone)]
pub(super) struct Recorded(Arc<Mutex<HashSet<(String, String)>>>);

/// Records the columns of `schema` that are not among `fixed` (the table's
/// columns known to code), before a file with that schema is written.
pub async fn record(
    lake: &Lake,
    table: &str,
    fixed: &[Field],
    schema: &Schema,
) -> Result<(), LakeError> {
    let recorded = lake.recorded_columns();
    let new: Vec<String> = {
        let seen = recorded.0.lock().expect("recorded columns poisoned");
        schema
            .fields()
            .iter()
            .map(|f| f.name())
            .filter(|name| fixed.iter().all(|f| f.name() != *name))
            .filter(|name| !seen.contains(&(table.to_owned(), (*name).clone())))
            .cloned()
            .collect()
    };
    for name in new {
        lake.put_marker(&marker(table, &name), Bytes::from(name.clone()))
            .await?;
        recorded
            .0
            .lock()
            .expect("recorded columns poisoned")
            .insert((table.to_owned(), name));
    }
    Ok(())
}

/// The table's schema from its markers: `fixed`, then every recorded column
/// as a nullable string, in name order. `None` when the markers do not yet
/// cover the table (no `complete`): infer it from the files, then
/// [`backfill`].
pub async fn recorded_schema(
    lake: &Lake,
    table: &str,
    fixed: &[Field],
) -> Result<Option<Schema>, LakeError> {
    let listed = lake.list(&dir(table)).await?;
    let mut complete = false;
    let mut names = Vec::new();
    for (path, _) in listed {
        let file = path.rsplit('/').next().unwrap_or_default();
        if file == COMPLETE {
            complete = true;
        } else if let Some(encoded) = file.strip_prefix("tag=") {
            names.push(decode(encoded));
        } else if file.starts_with("sha256=") {
            // The name is too long for the file's name: it is the content.
            if let Some(bytes) = lake.get(&path).await? {
                names.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    if !complete {
        return Ok(None);
    }
    names.sort();
    names.dedup();
    let mut fields = fixed.to_vec();
    fields.extend(
        names
            .into_iter()
            .filter(|name| fixed.iter().all(|f| f.name() != name))
            .map(|name| Field::new(name, string_type(), true)),
    );
    Ok(Some(Schema::new(fields)))
}

/// Records every open-ended column of `inferred` (a schema read from every
/// file of the table) and then marks the record complete. Every marker is
/// written, even one this process recorded before: it may be gone since
/// (someone deleted `_klaxon/columns` to rebuild it).
pub async fn backfill(
    lake: &Lake,
    table: &str,
    fixed: &[Field],
    inferred: &Schema,
) -> Result<(), LakeError> {
    for field in inferred.fields() {
        if fixed.iter().all(|f| f.name() != field.name()) {
            let name = field.name();
            lake.put_marker(&marker(table, name), Bytes::from(name.clone()))
                .await?;
        }
    }
    lake.put_marker(&format!("{}/{COMPLETE}", dir(table)), Bytes::new())
        .await
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;

    use super::*;
    use crate::{config::LakeConfig, points::base_fields};

    fn lake(dir: &std::path::Path) -> Lake {
        Lake::open(&LakeConfig {
            url: dir.display().to_string(),
            ..Default::default()
        })
        .unwrap()
    }

    fn schema_with(tags: &[&str]) -> Schema {
        let mut fields = base_fields();
        fields.extend(tags.iter().map(|t| Field::new(*t, string_type(), true)));
        Schema::new(fields)
    }

    fn names(schema: &Schema) -> Vec<&str> {
        schema.fields().iter().map(|f| f.name().as_str()).collect()
    }

    #[tokio::test]
    async fn recorded_columns_count_only_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path());
        let fixed = base_fields();
        assert_eq!(recorded_schema(&lake, "t", &fixed).await.unwrap(), None);
        record(&lake, "t", &fixed, &schema_with(&["service", "host"]))
            .await
            .unwrap();
        // Written by a writer, but the table's older files were never read.
        assert_eq!(recorded_schema(&lake, "t", &fixed).await.unwrap(), None);
        backfill(&lake, "t", &fixed, &schema_with(&["region"]))
            .await
            .unwrap();
        let schema = recorded_schema(&lake, "t", &fixed).await.unwrap().unwrap();
        assert_eq!(
            names(&schema),
            ["time", "name", "value", "host", "region", "service"]
        );
        assert_eq!(schema.field(3).data_type(), &string_type());
        assert!(schema.field(3).is_nullable());
        assert_eq!(schema.field(2).data_type(), &DataType::Float64);
        // Another table's record is its own.
        assert_eq!(recorded_schema(&lake, "u", &fixed).await.unwrap(), None);
    }

    #[tokio::test]
    async fn any_name_round_trips_long_and_strange_ones_included() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path());
        let fixed = base_fields();
        let long = "k".repeat(5_000);
        let strange = [
            ".",
            "..",
            "a/b",
            "100%",
            "tag=x",
            "a+2Fb",
            "Host",
            "host",
            "HOST",
            "#~[]{}\\\"",
            "complete",
            "ünïcode ✓",
            "sp ace\ttab\nline",
            long.as_str(),
        ];
        backfill(&lake, "t", &fixed, &schema_with(&strange))
            .await
            .unwrap();
        let schema = recorded_schema(&lake, "t", &fixed).await.unwrap().unwrap();
        let mut want: Vec<&str> = strange.to_vec();
        want.sort();
        assert_eq!(names(&schema)[3..], want[..]);
        // Every marker is one file directly in the columns directory, and
        // no two differ only in case.
        let mut folded = HashSet::new();
        for entry in std::fs::read_dir(dir.path().join("_klaxon/columns/t")).unwrap() {
            let entry = entry.unwrap();
            assert!(entry.file_type().unwrap().is_file());
            let name = entry.file_name().into_string().unwrap();
            assert!(folded.insert(name.to_lowercase()), "{name}");
            assert!(name.len() <= MAX_READABLE_NAME + 7, "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.=+".contains(&b)),
                "{name}"
            );
        }
    }
}
