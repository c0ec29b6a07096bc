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

/// Every row as text: name, time, value and each tag it has.
fn rows(batch: &RecordBatch) -> Vec<String> {
    let times = batch
        .column_by_name("time")
        .unwrap()
        .as_primitive::<TimestampMillisecondType>();
    let values = batch
        .column_by_name("value")
        .unwrap()
        .as_primitive::<Float64Type>();
    (0..batch.num_rows())
        .map(|row| {
            let mut text = format!(
                "{:?} {} {}",
                string_at(batch, "name", row),
                times.value(row),
                values.value(row)
            );
            for field in batch.schema().fields().iter().skip(3) {
                if let Some(value) = string_at(batch, field.name(), row) {
                    text.push_str(&format!(" {}={value}", field.name()));
                }
            }
            text
        })
        .collect()
}

/// `a` and `b` alike to the dictionaries' keys and values: a batch's `==`
/// compares a dictionary column row by row, by value.
fn same_batch(a: &RecordBatch, b: &RecordBatch) -> Result<(), TestCaseError> {
    prop_assert_eq!(a, b);
    for (x, y) in a.columns().iter().zip(b.columns()) {
        if let (Some(x), Some(y)) = (
            x.as_dictionary_opt::<Int32Type>(),
            y.as_dictionary_opt::<Int32Type>(),
        ) {
            prop_assert_eq!(x.keys(), y.keys());
            prop_assert_eq!(x.values(), y.values());
        }
    }
    Ok(())
}

proptest! {
    /// A batch looks a line's name and tags up as a series it has stored
    /// (JSON's usual layout, Graphite): each line, good or bad, must decode
    /// in a batch of lines that came before it, in either format, as it
    /// decodes alone.
    #[test]
    fn lines_decode_alike_in_one_batch_or_alone(
        lines in proptest::collection::vec((any::<bool>(), 0..4usize, 0..5usize, 0..3usize, 0..4u8), 1..40)
    ) {
        let names = ["cpu", "mem", "", "cpu.idle"];
        // JSON and Graphite spellings of the same sets: good, good, a
        // duplicate key, a reserved key, and none (the one spelling both
        // formats share).
        let json_tags = [r#","tags":{"host":"a"}"#, r#","tags":{"host":"a","zone":"z"}"#, r#","tags":{"k":"a","k":"b"}"#, r#","tags":{"time":"x"}"#, ""];
        let graphite_tags = [";host=a", ";host=a;zone=z", ";k=a;k=b", ";time=x", ""];
        // Epoch milliseconds, a short one, and one out of range.
        let json_times = ["1700000000000", "17", "1e16"];
        let mut shared = PointBatchBuilder::default();
        let mut shared_rejects = Vec::new();
        let mut alone_rows = Vec::new();
        for (json, name, tags, time, value) in lines {
            let (format, line) = if json {
                (Format::Json, format!(
                    r#"{{"name":"{}","time":{},"value":{value}.5{}}}"#,
                    names[name], json_times[time], json_tags[tags]
                ))
            } else {
                (Format::Graphite, format!("{}{} {value}.5 {}", names[name], graphite_tags[tags], 1_700_000_000 + time))
            };
            let before = shared_rejects.len();
            decode_record(format, line.as_bytes(), 0, Limits::unbounded(), &mut shared, &mut shared_rejects);
            let (batch, rejects, _) = decode(format, line.as_bytes());
            let reasons = |r: &[Rejected]| r.iter().map(|r| (r.reason, r.detail.clone())).collect::<Vec<_>>();
            prop_assert_eq!(reasons(&shared_rejects[before..]), reasons(&rejects), "{}", line);
            alone_rows.extend(rows(&batch));
        }
        prop_assert_eq!(rows(&shared.finish().unwrap()), alone_rows);
    }

    /// Series outlive their batch in the builder (points::builder); each
    /// finished batch must still be what a builder new to it gives, exactly:
    /// the same columns, rows and dictionary values in the same order, and
    /// the same lines rejected. Lines of all three formats share series and
    /// tag columns, and batches end anywhere.
    #[test]
    fn a_reused_builder_finishes_each_batch_as_a_new_one_would(
        lines in proptest::collection::vec((0..3usize, 0..4usize, 0..5usize, any::<bool>(), any::<bool>()), 1..60),
        max_tag_keys in prop_oneof![Just(usize::MAX), 1..3usize],
    ) {
        let limits = Limits { max_tag_keys, ..Limits::unbounded() };
        let names = ["cpu", "mem", "", "disk"];
        let json_tags = [r#","tags":{"host":"a"}"#, r#","tags":{"host":"b","zone":"z"}"#, r#","tags":{"k":"a","k":"b"}"#, r#","tags":{"zone":"y"}"#, ""];
        let graphite_tags = [";host=a", ";host=b;zone=z", ";k=a;k=b", ";zone=y", ""];
        let influx_tags = [",host=a", ",host=b,zone=z", ",k=a,k=b", ",zone=y", ""];
        let mut reused = PointBatchBuilder::default();
        let mut new = PointBatchBuilder::default();
        let (mut reused_rejects, mut new_rejects) = (Vec::new(), Vec::new());
        for (format, name, tags, two_fields, batch_ends) in lines {
            let (format, line) = match format {
                0 => (Format::Json, format!(
                    r#"{{"name":"{}","time":1700000000000,"value":1.5{}}}"#,
                    names[name], json_tags[tags]
                )),
                1 => (Format::Graphite, format!("{}{} 2.5 1700000000", names[name], graphite_tags[tags])),
                _ => (Format::Influx, format!(
                    "{}{} value=3.5{} 1700000000000000000",
                    names[name], influx_tags[tags], if two_fields { ",max=4i" } else { "" }
                )),
            };
            decode_record(format, line.as_bytes(), 0, limits, &mut reused, &mut reused_rejects);
            decode_record(format, line.as_bytes(), 0, limits, &mut new, &mut new_rejects);
            if batch_ends {
                same_batch(&reused.finish().unwrap(), &new.finish().unwrap())?;
                new = PointBatchBuilder::default();
            }
        }
        same_batch(&reused.finish().unwrap(), &new.finish().unwrap())?;
        let reasons = |r: &[Rejected]| r.iter().map(|r| (r.reason, r.detail.clone())).collect::<Vec<_>>();
        prop_assert_eq!(reasons(&reused_rejects), reasons(&new_rejects));
    }

    #[test]
    fn lines_are_split_as_slice_split_does(bytes in proptest::collection::vec(
        prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a')], 0..40)
    ) {
        let mut start = 0;
        let expected: Vec<_> = bytes.split(|b| *b == b'\n').map(|line| {
            let range = start..start + line.len();
            start = range.end + 1;
            range
        }).collect();
        prop_assert_eq!(line_ranges(&bytes).collect::<Vec<_>>(), expected);
    }

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

    /// Graphite and Influx, line by line: every line that is not blank or a
    /// comment yields points or exactly one rejection, never neither (a
    /// decoder that silently dropped a line would fail here), and a record
    /// decodes as its lines do one by one.
    #[test]
    fn every_graphite_and_influx_line_is_kept_or_rejected(
        lines in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..60),
                "[a-z.;=,# ]{0,12}( [-0-9.e]{0,8}){0,2}".prop_map(String::into_bytes),
                "[a-z]{1,6}(,[a-z]{1,3}=[a-z]{1,3}){0,2} [a-z]{1,3}=[-0-9.ei\"a-z]{0,6}(,[a-z]=[0-9.]{1,4}){0,2}( [0-9]{1,19})?".prop_map(String::into_bytes),
            ],
            0..12,
        ),
    ) {
        let record: Vec<u8> = lines.iter().flat_map(|l| {
            let mut line: Vec<u8> = l.iter().copied().filter(|b| *b != b'\n').collect();
            line.push(b'\n');
            line
        }).collect();
        for format in [Format::Graphite, Format::Influx] {
            let (_, rejects, n) = decode(format, &record);
            let (mut points, mut rejected) = (0, 0);
            for raw in record.split(|b| *b == b'\n') {
                let line = raw.strip_suffix(b"\r").unwrap_or(raw);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let (_, line_rejects, line_points) = decode(format, line);
                let comment = std::str::from_utf8(line).is_ok_and(|l| l.trim_start().starts_with('#'));
                if comment {
                    prop_assert_eq!((line_points, line_rejects.len()), (0, 0));
                    continue;
                }
                prop_assert!(
                    (line_points >= 1 && line_rejects.is_empty()) || (line_points == 0 && line_rejects.len() == 1),
                    "{format:?} {:?}: {line_points} points, {line_rejects:?}",
                    String::from_utf8_lossy(line)
                );
                if format == Format::Graphite {
                    prop_assert!(line_points <= 1);
                }
                points += line_points;
                rejected += line_rejects.len();
            }
            prop_assert_eq!((n, rejects.len()), (points, rejected));
        }
    }

    /// Hostile points under tight limits: whatever a producer sends, no point
    /// outside the limits is kept, the batch never holds more tag keys than
    /// allowed, and every line is kept or rejected.
    #[test]
    fn limits_hold_against_hostile_points(
        points in proptest::collection::vec(
            (
                prop_oneof![Just(i64::MIN), Just(-1i64), 0i64..20_000, Just(8_900_000_000_000_000), Just(i64::MAX)],
                proptest::collection::vec(0u16..200, 0..40),
                0usize..400,
            ),
            1..30,
        ),
    ) {
        let limits = Limits {
            max_line_bytes: 600,
            min_time_ms: 0,
            max_time_ms: 10_000,
            max_tags_per_point: 8,
            max_tag_keys: 20,
        };
        let lines: Vec<String> = points
            .iter()
            .map(|(time, keys, padding)| {
                let tags: Vec<String> = keys.iter().map(|k| format!("\"k{k}\":\"v\"")).collect();
                format!(
                    "{{\"name\":\"m{}\",\"time\":{time},\"value\":1,\"tags\":{{{}}}}}",
                    "x".repeat(*padding),
                    tags.join(",")
                )
            })
            .collect();
        let text = lines.join("\n");
        let mut builder = PointBatchBuilder::default();
        let mut rejects = Vec::new();
        let n = decode_record(Format::Json, text.as_bytes(), 0, limits, &mut builder, &mut rejects);
        prop_assert_eq!(n + rejects.len(), lines.len());
        prop_assert!(builder.tag_columns() <= limits.max_tag_keys);
        let batch = builder.finish().unwrap();
        prop_assert!(batch.num_columns() - 3 <= limits.max_tag_keys);
        let times = batch.column_by_name("time").unwrap().as_primitive::<TimestampMillisecondType>();
        prop_assert!(times.values().iter().all(|t| (0..=10_000).contains(t)));
        for r in &rejects {
            prop_assert!(r.bytes.len() <= 600 || r.reason == RejectReason::LineTooLong);
        }
    }
}
