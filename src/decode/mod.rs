//! Decoders from Kafka record bytes to Arrow rows.
//!
//! A record holds one point or many newline-delimited points. Each line is
//! decoded on its own: a bad line is rejected with a [`RejectReason`] (and goes
//! to the dead-letter topic) while the good lines of the same record are kept.
//! Decoders append into [`PointBatchBuilder`] directly.

mod graphite;
mod influx;
mod json;
#[cfg(test)]
mod proptests;
mod sink;

use std::ops::Range;

use serde::Deserialize;

use crate::points::PointBatchBuilder;
pub(crate) use sink::{LineSink, PointName, Tags};

/// The wire format of a topic, set per topic in config.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"name": ..., "time": ..., "value": ..., "tags": {...}}`, one per line.
    #[default]
    Json,
    /// Graphite plaintext: `path value epoch_seconds`, tagged `path;k=v value epoch`.
    Graphite,
    /// Influx line protocol, nanosecond timestamps; one point per numeric field.
    Influx,
}

/// Why a line was rejected. The label is what `/metrics` and the dead-letter
/// headers carry, so it is part of the user contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    InvalidUtf8,
    LineTooLong,
    InvalidJson,
    InvalidSyntax,
    MissingField,
    NonNumericValue,
    NonFiniteValue,
    BadTimestamp,
    TimestampOutOfRange,
    DuplicateTag,
    TooManyTags,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::LineTooLong => "line_too_long",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::InvalidSyntax => "invalid_syntax",
            RejectReason::MissingField => "missing_field",
            RejectReason::NonNumericValue => "non_numeric_value",
            RejectReason::NonFiniteValue => "non_finite_value",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::DuplicateTag => "duplicate_tag",
            RejectReason::TooManyTags => "too_many_tags",
        }
    }

    /// Every reason, so counters can be registered at zero before the first rejection.
    pub const ALL: [RejectReason; 11] = [
        RejectReason::InvalidUtf8,
        RejectReason::LineTooLong,
        RejectReason::InvalidJson,
        RejectReason::InvalidSyntax,
        RejectReason::MissingField,
        RejectReason::NonNumericValue,
        RejectReason::NonFiniteValue,
        RejectReason::BadTimestamp,
        RejectReason::TimestampOutOfRange,
        RejectReason::DuplicateTag,
        RejectReason::TooManyTags,
    ];
}

/// A line that could not be decoded: why, and where in the record it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub reason: RejectReason,
    pub detail: String,
    /// 1-based line number within the record.
    pub line: usize,
    /// Byte range of the line within the record.
    pub bytes: Range<usize>,
}

/// What a line parser found wrong.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LineError {
    pub(crate) reason: RejectReason,
    pub(crate) detail: String,
}

impl LineError {
    pub(crate) fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Bounds every decoded point must respect.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_line_bytes: usize,
    pub min_time_ms: i64,
    pub max_time_ms: i64,
    /// Tags one point may carry: its series' key size.
    pub max_tags_per_point: usize,
    /// Distinct tag keys one batch may hold. Each key is a column padded to
    /// the batch's rows, so keys multiply memory: 20k keys over 20k rows is
    /// gigabytes from a few MB of input.
    pub max_tag_keys: usize,
}

impl Limits {
    /// No bounds: for tests and tools that replay old data.
    pub fn unbounded() -> Self {
        Self {
            max_line_bytes: usize::MAX,
            min_time_ms: i64::MIN,
            max_time_ms: i64::MAX,
            max_tags_per_point: usize::MAX,
            max_tag_keys: usize::MAX,
        }
    }
}

/// Decodes one record's bytes, appending good points to `builder` and the
/// rejected lines to `rejects`. Returns how many points were appended.
pub fn decode_record(
    format: Format,
    payload: &[u8],
    record_time_ms: i64,
    limits: Limits,
    builder: &mut PointBatchBuilder,
    rejects: &mut Vec<Rejected>,
) -> usize {
    let mut sink = LineSink::new(builder, limits, record_time_ms);
    // One pass checks the whole record's UTF-8, faster than a pass per
    // line; only a record holding a bad line is checked line by line, to
    // find which lines.
    let record = std::str::from_utf8(payload).ok();
    let mut accepted = 0;
    for (index, range) in line_ranges(payload).enumerate() {
        let raw = &payload[range.clone()];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        sink.start_line();
        // Lines end at ASCII bytes, so their ends are char boundaries.
        let text = record.map(|record| &record[range.start..range.start + line.len()]);
        match decode_line(format, line, text, limits, &mut sink).and_then(|()| sink.commit_line()) {
            Ok(n) => accepted += n,
            Err(e) => rejects.push(Rejected {
                reason: e.reason,
                detail: e.detail,
                line: index + 1,
                bytes: range,
            }),
        }
    }
    accepted
}

/// The byte range of each `\n`-separated line, the last one unterminated
/// (possibly empty). Found with memchr: a byte-at-a-time split was a tenth of
/// JSON decoding.
fn line_ranges(payload: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let ends = memchr::memchr_iter(b'\n', payload).chain(std::iter::once(payload.len()));
    let mut start = 0;
    ends.map(move |end| {
        let range = start..end;
        start = end + 1;
        range
    })
}

/// A Graphite or Influx value: nearly always a plain decimal, read without
/// `str::parse`'s general algorithm ([`json::number_token`]); any other
/// token is `str::parse`'s, as it always was.
fn parse_value(token: &str) -> Result<f64, std::num::ParseFloatError> {
    json::number_token(token).map_or_else(|| token.parse(), Ok)
}

/// Decodes `line`; `text` is the line as text when its record was valid
/// UTF-8 as a whole.
fn decode_line<'a>(
    format: Format,
    line: &'a [u8],
    text: Option<&'a str>,
    limits: Limits,
    sink: &mut LineSink<'_, 'a>,
) -> Result<(), LineError> {
    if line.len() > limits.max_line_bytes {
        return Err(LineError::new(
            RejectReason::LineTooLong,
            format!(
                "line of {} bytes exceeds {}",
                line.len(),
                limits.max_line_bytes
            ),
        ));
    }
    let line = match text {
        Some(text) => text,
        None => std::str::from_utf8(line)
            .map_err(|e| LineError::new(RejectReason::InvalidUtf8, e.to_string()))?,
    };
    match format {
        Format::Json => json::parse_line(line, sink),
        Format::Graphite => {
            if line.trim_start().starts_with('#') {
                return Ok(());
            }
            graphite::parse_line(line, sink)
        }
        Format::Influx => {
            if line.trim_start().starts_with('#') {
                return Ok(());
            }
            influx::parse_line(line, sink)
        }
    }
}

/// Helpers shared by the decoders' tests.
#[cfg(test)]
pub(crate) mod testing {
    use arrow::util::pretty::pretty_format_batches;

    use super::*;

    pub(crate) const RECORD_TIME: i64 = 1_700_000_000_000;

    /// Decodes `text` and renders the batch as a table, plus the rejections.
    pub(crate) fn decode_to_table(format: Format, text: &str) -> (String, Vec<Rejected>) {
        let mut builder = PointBatchBuilder::default();
        let mut rejects = Vec::new();
        decode_record(
            format,
            text.as_bytes(),
            RECORD_TIME,
            Limits::unbounded(),
            &mut builder,
            &mut rejects,
        );
        let batch = builder.finish().unwrap();
        (
            pretty_format_batches(&[batch]).unwrap().to_string(),
            rejects,
        )
    }

    pub(crate) fn reasons(rejects: &[Rejected]) -> Vec<&'static str> {
        rejects.iter().map(|r| r.reason.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{testing::*, *};

    #[test]
    fn good_lines_survive_a_bad_neighbour() {
        let text = "{\"name\":\"a\",\"time\":1,\"value\":1}\nnot json\n\n{\"name\":\"b\",\"time\":2,\"value\":2}\r\n";
        let (table, rejects) = decode_to_table(Format::Json, text);
        assert!(table.contains("| a "), "{table}");
        assert!(table.contains("| b "), "{table}");
        assert_eq!(reasons(&rejects), ["invalid_json"]);
        assert_eq!(rejects[0].line, 2);
        assert_eq!(&text.as_bytes()[rejects[0].bytes.clone()], b"not json");
    }

    #[test]
    fn limits_are_enforced() {
        let mut builder = PointBatchBuilder::default();
        let mut rejects = Vec::new();
        let limits = Limits {
            max_line_bytes: 60,
            min_time_ms: 0,
            max_time_ms: 10_000,
            ..Limits::unbounded()
        };
        let text = b"{\"name\":\"a\",\"time\":20000,\"value\":1}\n{\"name\":\"a\",\"time\":1,\"value\":1,\"tags\":{\"k\":\"a long tag value here\"}}\n\xff\xfe\n";
        let n = decode_record(Format::Json, text, 0, limits, &mut builder, &mut rejects);
        assert_eq!(n, 0);
        assert_eq!(
            reasons(&rejects),
            ["timestamp_out_of_range", "line_too_long", "invalid_utf8"]
        );
    }

    #[test]
    fn every_reason_is_listed_in_declaration_order() {
        for (i, reason) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{}", reason.as_str());
        }
    }

    #[test]
    fn tag_explosions_are_rejected() {
        let limits = Limits {
            max_tags_per_point: 3,
            max_tag_keys: 5,
            ..Limits::unbounded()
        };
        let line = |keys: &[&str]| {
            let tags: Vec<String> = keys.iter().map(|k| format!("\"{k}\":\"v\"")).collect();
            format!(
                "{{\"name\":\"m\",\"time\":1,\"value\":1,\"tags\":{{{}}}}}\n",
                tags.join(",")
            )
        };
        let text = [
            line(&["a", "b", "c", "d"]), // more tags than a point may carry
            line(&["a", "b", "c"]),
            line(&["a", "d", "e"]), // five keys in the batch now
            line(&["f"]),           // a sixth key
            line(&["a", "e"]),      // known keys are still fine
        ]
        .concat();
        let mut builder = PointBatchBuilder::default();
        let mut rejects = Vec::new();
        let n = decode_record(
            Format::Json,
            text.as_bytes(),
            0,
            limits,
            &mut builder,
            &mut rejects,
        );
        assert_eq!(n, 3);
        assert_eq!(reasons(&rejects), ["too_many_tags", "too_many_tags"]);
        assert_eq!(rejects.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(builder.tag_columns(), 5);
    }

    #[test]
    fn duplicates_are_found_among_many_tags() {
        let tags: Vec<String> = (0..50_000).map(|i| format!("k{i}=v")).collect();
        let unique = format!("m;{} 1 10", tags.join(";"));
        let (_, rejects) = decode_to_table(Format::Graphite, &unique);
        assert!(rejects.is_empty(), "{rejects:?}");
        let twice = format!("m;{};k7=w 1 10", tags.join(";"));
        let (_, rejects) = decode_to_table(Format::Graphite, &twice);
        assert_eq!(reasons(&rejects), ["duplicate_tag"]);
        assert!(rejects[0].detail.contains("k7"), "{}", rejects[0].detail);
    }

    #[test]
    fn a_repeated_tag_set_is_judged_alike_on_every_line() {
        // A batch keeps a good tag set by its spelling and skips reading it
        // again; a bad one is never kept, so it is refused every time.
        for (format, bad, good) in [
            (
                Format::Json,
                r#"{"name":"m","value":1,"tags":{"k":"a","k":"b"}}"#,
                r#"{"name":"m","value":2,"tags":{"time":"x","k":"a"}}"#,
            ),
            // The usual layout, where a name and tags are looked up as a series.
            (
                Format::Json,
                r#"{"name":"m","time":10,"value":1,"tags":{"k":"a","k":"b"}}"#,
                r#"{"name":"m","time":10,"value":2,"tags":{"time":"x","k":"a"}}"#,
            ),
            (Format::Graphite, "m;k=a;k=b 1 10", "m;time=x;k=a 2 10"),
            (
                Format::Influx,
                "m,k=a,k=b value=1 10",
                "m,time=x,k=a value=2 10",
            ),
        ] {
            let text = [bad, good, bad, good].join("\n");
            let (table, rejects) = decode_to_table(format, &text);
            assert_eq!(reasons(&rejects), ["duplicate_tag"; 2], "{format:?}");
            assert_eq!(
                rejects.iter().map(|r| r.line).collect::<Vec<_>>(),
                [1, 3],
                "{format:?}"
            );
            let rows: Vec<&str> = table.lines().filter(|l| l.contains("| m ")).collect();
            assert_eq!(rows.len(), 2, "{format:?}\n{table}");
            assert!(
                rows.iter()
                    .all(|row| row.contains("| a ") && row.contains("| x ")),
                "{format:?}\n{table}"
            );
        }
    }

    #[test]
    fn reserved_and_duplicate_tags() {
        let (table, rejects) = decode_to_table(
            Format::Graphite,
            "a;time=x;host=h 1 10\nb;host=1;host=2 1 10\n",
        );
        assert!(table.contains("tag_time"), "{table}");
        assert_eq!(reasons(&rejects), ["duplicate_tag"]);
    }
}
