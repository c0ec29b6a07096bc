//! Files: a scratch directory per test, what klaxon reads from it (config,
//! rules, on-call), and the test data and schemas of this repository.

use std::path::{Path, PathBuf};

/// A scratch directory, kept (and printed) when KLAXON_TEST_KEEP is set so a
/// failure's logs and lake can be read afterwards.
pub fn test_dir() -> tempfile::TempDir {
    let keep = std::env::var_os("KLAXON_TEST_KEEP").is_some();
    let dir = tempfile::Builder::new()
        .prefix("klaxon-test-")
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    if keep {
        eprintln!("test dir: {}", dir.path().display());
    }
    dir
}

/// A file of this repository, e.g. `schemas/paging-event.schema.json`.
pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The entries of `dir`, sorted: the cases of a data-driven test.
pub fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
}

/// Writes an ingest config tuned for tests: small flushes, fast rebalances.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("klaxon.toml");
    let text = format!(
        r#"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"

[topics]
partitions = 4

[ingest]
flush_rows = 700
flush_interval = "300ms"

{extra}
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// [`write_config`] with `extra`, flushing every `rows` rows or `interval`,
/// written as `dir/NAME` (beside `klaxon.toml`).
pub fn flushing_config(dir: &Path, name: &str, extra: &str, rows: u64, interval: &str) -> PathBuf {
    let text = std::fs::read_to_string(write_config(dir, extra))
        .unwrap()
        .replace("flush_rows = 700", &format!("flush_rows = {rows}"))
        .replace(
            "flush_interval = \"300ms\"",
            &format!("flush_interval = \"{interval}\""),
        );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A config whose buffers flush only on a stop (or when the memory budget
/// is used): `dir/holding.toml`.
pub fn holding_config(dir: &Path, extra: &str) -> PathBuf {
    flushing_config(dir, "holding.toml", extra, 1_000_000_000, "10m")
}

/// Writes `text` as `dir/rules/FILE`; returns the rules directory.
pub fn write_rules(dir: &Path, file: &str, text: &str) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join(file), text).unwrap();
    rules
}

/// Writes `dir/oncall.toml`: one user, `operator`, paged on klaxon's console
/// (its log), as `klaxon up` suggests.
pub fn console_oncall(dir: &Path) -> PathBuf {
    let path = dir.join("oncall.toml");
    std::fs::write(
        &path,
        r#"
default_policy = "ops"
[[user]]
id = "operator"
contact = [{ type = "console" }]
[[policy]]
id = "ops"
[[policy.level]]
targets = [{ user = "operator" }]
delay = "5m"
"#,
    )
    .unwrap();
    path
}
