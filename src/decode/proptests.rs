//! Property tests: every decoder accepts what a faithful encoder writes, and
//! never panics or loses track of a line on arbitrary bytes.

use arrow::{
    array::{Array, AsArray, RecordBatch},
    datatypes::{Float64Type, Int32Type, TimestampMillisecondType},
};
use proptest::prelude::*;

use super::*;

fn decode(format: Format, text: &[u8]) -> (RecordBatch, Vec<Rejected>, usize) {
    let mut builder = PointBatchBuilder::default();
    let mut rejects = Vec::new();
    let n = decode_record(
        format,
        text,
        0,
        Limits::unbounded(),
        &mut builder,
        &mut rejects,
    );
    (builder.finish().unwrap(), rejects, n)
}

fn string_at(batch: &RecordBatch, column: &str, row: usize) -> Option<String> {
    let col = batch.column_by_name(column)?;
    let dict = col.as_dictionary::<Int32Type>();
    if dict.is_null(row) {
        return None;
    }
    let values = dict.values().as_string::<i32>();
    Some(values.value(dict.keys().value(row) as usize).to_owned())
}

/// Names and tag text as producers write them: printable, no separators.
fn ident() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_.-]{0,15}"
}

fn tags() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map("[a-z][a-z0-9_]{0,7}", ident(), 0..4).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| !crate::points::RESERVED.contains(&k.as_str()))
            .collect()
    })
}

proptest! {
    #[test]
    fn json_round_trip(
        name in "\\PC{1,20}",
        value in -1e12f64..1e12,
        time in 0i64..4_000_000_000_000,
        tags in tags(),
    ) {
        let point = serde_json::json!({
            "name": name,
            "time": time,
            "value": value,
            "tags": tags.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        });
        let (batch, rejects, n) = decode(Format::Json, point.to_string().as_bytes());
        prop_assert!(rejects.is_empty(), "{rejects:?}");
        prop_assert_eq!(n, 1);
        prop_assert_eq!(string_at(&batch, "name", 0), Some(name));
        prop_assert_eq!(batch.column_by_name("value").unwrap().as_primitive::<Float64Type>().value(0), value);
        prop_assert_eq!(batch.column_by_name("time").unwrap().as_primitive::<TimestampMillisecondType>().value(0), time);
        for (k, v) in &tags {
            prop_assert_eq!(string_at(&batch, k, 0), Some(v.clone()));
        }
    }

    #[test]
    fn graphite_round_trip(
        name in ident(),
        value in -1e9f64..1e9,
        seconds in 0i64..4_000_000_000,
        tags in tags(),
    ) {
        let mut path = name.clone();
        for (k, v) in &tags {
            path.push_str(&format!(";{k}={v}"));
        }
        let (batch, rejects, _) = decode(Format::Graphite, format!("{path} {value} {seconds}").as_bytes());
        prop_assert!(rejects.is_empty(), "{rejects:?}");
        prop_assert_eq!(string_at(&batch, "name", 0), Some(name));
        prop_assert_eq!(batch.column_by_name("value").unwrap().as_primitive::<Float64Type>().value(0), value);
        prop_assert_eq!(batch.column_by_name("time").unwrap().as_primitive::<TimestampMillisecondType>().value(0), seconds * 1000);
        for (k, v) in &tags {
            prop_assert_eq!(string_at(&batch, k, 0), Some(v.clone()));
        }
    }

    #[test]
    fn influx_round_trip_with_escapes(
        measurement in "[a-z]{1,6}( |,)?[a-z]{0,4}",
        tag_value in "[a-z]{1,4}( |,|=)?[a-z]{0,4}",
        value in -1e9f64..1e9,
        ns in 0i64..4_000_000_000_000_000_000,
    ) {
        let escape = |s: &str, extra: &[char]| {
            let mut out = String::new();
            for c in s.chars() {
                if c == ',' || c == ' ' || extra.contains(&c) {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        };
        let line = format!(
            "{},host={} value={value} {ns}",
            escape(&measurement, &[]),
            escape(&tag_value, &['='])
        );
        let (batch, rejects, _) = decode(Format::Influx, line.as_bytes());
        prop_assert!(rejects.is_empty(), "{line}: {rejects:?}");
        prop_assert_eq!(string_at(&batch, "name", 0), Some(measurement));
        prop_assert_eq!(string_at(&batch, "host", 0), Some(tag_value));
        prop_assert_eq!(batch.column_by_name("value").unwrap().as_primitive::<Float64Type>().value(0), value);
        prop_assert_eq!(batch.column_by_name("time").unwrap().as_primitive::<TimestampMillisecondType>().value(0), ns.div_euclid(1_000_000));
    }

    /// Any bytes: no panic, every non-blank line is either kept or rejected,
    /// and each rejection points at a real line of the record.
    #[test]
    fn arbitrary_bytes_are_accounted_for(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        for format in [Format::Json, Format::Graphite, Format::Influx] {
            let (batch, rejects, n) = decode(format, &bytes);
            prop_assert_eq!(batch.num_rows(), n);
            for r in &rejects {
                prop_assert!(r.bytes.end <= bytes.len());
                prop_assert!(!bytes[r.bytes.clone()].contains(&b'\n'));
            }
            let lines = bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count();
            prop_assert!(rejects.len() <= lines);
            if format == Format::Json {
                // JSON has no comments and one point per line.
                prop_assert_eq!(n + rejects.len(), lines);
            }
        }
    }
}
