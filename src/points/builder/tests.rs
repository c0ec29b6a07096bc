//! Tests of the batch builder: stored tag sets and series append as their
//! tags would, and what is kept between batches changes no batch.

use arrow::array::AsArray;

use super::*;

#[test]
fn missing_tags_are_null_and_columns_sorted() {
    let mut b = PointBatchBuilder::default();
    b.push("cpu", 1_000, 1.0, &[("host", "a")]);
    b.push("cpu", 2_000, 2.0, &[("zone", "z1"), ("host", "b")]);
    b.push("mem", 3_000, 3.0, &[] as &[(&str, &str)]);
    let batch = b.finish().unwrap();
    let names: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["time", "name", "value", "host", "zone"]);
    let zone = batch.column_by_name("zone").unwrap();
    assert_eq!(zone.null_count(), 2);
    assert!(b.is_empty(), "finish resets the builder");
}

#[test]
fn a_stored_tag_set_appends_as_its_tags_would() {
    let mut by_set = PointBatchBuilder::default();
    let mut by_tags = PointBatchBuilder::default();
    let web = [("host", "web-1"), ("zone", "a")];
    let db = [("host", "db-1")];
    assert_eq!(by_set.known_tag_set(b"{web}"), None);
    let web_set = by_set.add_tag_set(b"{web}", &web);
    let db_set = by_set.add_tag_set(b"{db}", &db);
    let none = by_set.add_tag_set(b"", &[] as &[(&str, &str)]);
    for i in 0..6 {
        let (set, tags): (TagSetId, &[(&str, &str)]) = match i % 3 {
            0 => (web_set, &web),
            1 => (db_set, &db),
            _ => (none, &[]),
        };
        let found = by_set.known_tag_set(match i % 3 {
            0 => b"{web}".as_slice(),
            1 => b"{db}",
            _ => b"",
        });
        assert_eq!(found, Some(set));
        by_set.push_tagged("cpu", i, i as f64, set);
        by_tags.push("cpu", i, i as f64, tags);
    }
    let (by_set, by_tags) = (by_set.finish().unwrap(), by_tags.finish().unwrap());
    assert_eq!(by_set, by_tags);
    assert_eq!(host_values(&by_set), 2, "a value is stored once");
}
#[test]
fn a_stored_series_appends_as_its_name_and_tags_would() {
    let mut by_series = PointBatchBuilder::default();
    let mut by_tags = PointBatchBuilder::default();
    let web = [("host", "web-1")];
    let set = by_series.add_tag_set(b"{web}", &web);
    let none = by_series.add_tag_set(b"", &[] as &[(&str, &str)]);
    assert_eq!(by_series.known_series("cpu", b"{web}"), None);
    let cpu = by_series.add_series("cpu", set);
    let mem = by_series.add_series("mem", set);
    // A name and a spelling are one series only together: `ab` with no
    // tags is not `a` with a spelling `b`.
    let ab = by_series.add_series("ab", none);
    assert_eq!(by_series.known_series("cpu", b"{web}"), Some(cpu));
    assert_eq!(by_series.known_series("mem", b"{web}"), Some(mem));
    assert_eq!(by_series.known_series("ab", b""), Some(ab));
    assert_eq!(by_series.known_series("a", b"b"), None);
    assert_eq!(by_series.known_series("cpu", b"{db}"), None);
    for i in 0..4 {
        let (series, name, tags): (SeriesId, &str, &[(&str, &str)]) = match i % 3 {
            0 => (cpu, "cpu", &web),
            1 => (mem, "mem", &web),
            _ => (ab, "ab", &[]),
        };
        by_series.push_series(series, i, i as f64);
        by_tags.push(name, i, i as f64, tags);
    }
    assert_eq!(by_series.finish().unwrap(), by_tags.finish().unwrap());
}

/// How many values the batch's `host` dictionary holds.
fn host_values(batch: &RecordBatch) -> usize {
    let hosts = batch.column_by_name("host").unwrap();
    hosts
        .as_dictionary::<arrow::datatypes::Int32Type>()
        .values()
        .len()
}

/// Series `i` of a store: name `m{i % 7}`, tags `host=h{i}`, and for odd
/// `i` also `zone=z{i % 3}`.
fn store_series(b: &mut PointBatchBuilder, i: usize) -> SeriesId {
    let name = format!("m{}", i % 7);
    let spelling = format!("{{{i}}}");
    if let Some(series) = b.known_series(&name, spelling.as_bytes()) {
        return series;
    }
    let (host, zone) = (format!("h{i}"), format!("z{}", i % 3));
    let mut tags = vec![("host", host.as_str())];
    if i % 2 == 1 {
        tags.push(("zone", zone.as_str()));
    }
    let set = b.add_tag_set(spelling.as_bytes(), &tags);
    b.add_series(&name, set)
}

#[test]
fn series_outlive_their_batch_and_a_batch_holds_only_its_own() {
    let mut kept = PointBatchBuilder::default();
    for i in 0..6 {
        let series = store_series(&mut kept, i);
        kept.push_series(series, i as i64, 1.0);
    }
    kept.finish().unwrap();
    // The next batch finds its series stored, and holds only the rows,
    // columns and values of its own: what a new builder gives.
    let mut new = PointBatchBuilder::default();
    for (row, i) in [4, 2, 4].into_iter().enumerate() {
        let found = kept.known_series(&format!("m{}", i % 7), format!("{{{i}}}").as_bytes());
        let series = found.expect("a series stays stored for the next batch");
        kept.push_series(series, row as i64, 2.0);
        let series = store_series(&mut new, i);
        new.push_series(series, row as i64, 2.0);
    }
    assert!(
        !kept.has_tag_column("zone"),
        "no point of this batch has a zone"
    );
    assert_eq!(kept.tag_columns(), 1);
    let (kept, new) = (kept.finish().unwrap(), new.finish().unwrap());
    assert_eq!(kept, new);
    assert_eq!(kept.schema().fields().len(), 4, "time, name, value, host");
    assert_eq!(host_values(&kept), 2, "h4 and h2, not the batch before's");
}

#[test]
fn a_store_mostly_unused_is_forgotten() {
    let mut b = PointBatchBuilder::default();
    let many = 12_288;
    for i in 0..many {
        let series = store_series(&mut b, i);
        b.push_series(series, 0, 1.0);
    }
    b.finish().unwrap();
    let full = b.estimated_bytes();
    // One series of the many in this batch: the rest is forgotten.
    let series = store_series(&mut b, 1);
    b.push_series(series, 0, 1.0);
    b.finish().unwrap();
    assert_eq!(
        b.known_series("m1", b"{1}"),
        None,
        "forgotten at the finish"
    );
    // Allocations of up to a usual batch stay (see `TagSets::clear`).
    assert!(
        b.estimated_bytes() < full / 2,
        "{} of {full}",
        b.estimated_bytes()
    );
    // A store of a few unused series is kept, as the slack allows.
    let series = store_series(&mut b, 2);
    b.push_series(series, 0, 1.0);
    b.finish().unwrap();
    b.finish().unwrap();
    assert!(
        b.known_series("m2", b"{2}").is_some(),
        "kept through an empty batch"
    );
}
