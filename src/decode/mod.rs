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

use std::{borrow::Cow, ops::Range};

use serde::Deserialize;

use crate::points::{PointBatchBuilder, TagSetId, tag_column_name};

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

/// Tag pairs of one line, borrowed from the record where no unescaping was needed.
pub(crate) type Tags<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Where line parsers put what they found, checked before it reaches the batch.
pub(crate) struct LineSink<'b, 'a> {
    builder: &'b mut PointBatchBuilder,
    limits: Limits,
    /// The record's Kafka timestamp: the time of a point that carries none, so a
    /// replay decodes the same rows (wall-clock time would not).
    pub(crate) record_time_ms: i64,
    /// Scratch for the current line's tags, reused across lines of the record.
    pub(crate) tags: Tags<'a>,
    line_tags: LineTags<'a>,
    /// Points of the current line, committed to the batch only if the line is good.
    pending: Vec<(PointName<'a>, i64, f64)>,
    /// Reused to spell `measurement.field` names without an allocation per point.
    name_buf: String,
}

/// Where the current line's tags are.
#[derive(Debug, Clone, Copy)]
enum LineTags<'a> {
    /// In `tags`, read by a parser that keeps no spelling.
    Parsed,
    /// In `tags`, read from this spelling: the batch stores the set under it
    /// once the line is good.
    Spelled(&'a [u8]),
    /// A set the batch holds already, checked when it was stored; `tags` is
    /// empty.
    Known(TagSetId),
}

/// A point's name as the line spells it.
#[derive(Debug)]
pub(crate) enum PointName<'a> {
    Whole(Cow<'a, str>),
    /// Influx `measurement` and `field`, named `measurement.field`.
    Joined(Cow<'a, str>, Cow<'a, str>),
}

impl<'a> LineSink<'_, 'a> {
    /// Tells the sink the bytes that spell the line's tag set (see
    /// [`PointBatchBuilder::known_tag_set`] for what a spelling must be).
    /// True when the batch knows the spelling: the parser skips reading the
    /// tags. Otherwise it reads them into `tags`.
    pub(crate) fn known_tags(&mut self, spelling: &'a [u8]) -> bool {
        match self.builder.known_tag_set(spelling) {
            Some(set) => {
                self.line_tags = LineTags::Known(set);
                true
            }
            None => {
                self.line_tags = LineTags::Spelled(spelling);
                false
            }
        }
    }

    /// Empties `tags` and forgets any spelling: the line's tags are read
    /// again, from scratch.
    pub(crate) fn forget_tags(&mut self) {
        self.tags.clear();
        self.line_tags = LineTags::Parsed;
    }

    /// Queues one point of the current line.
    pub(crate) fn point(
        &mut self,
        name: PointName<'a>,
        time_ms: i64,
        value: f64,
    ) -> Result<(), LineError> {
        let (PointName::Whole(first) | PointName::Joined(first, _)) = &name;
        if first.is_empty() {
            return Err(LineError::new(
                RejectReason::MissingField,
                "empty metric name",
            ));
        }
        if !value.is_finite() {
            return Err(LineError::new(
                RejectReason::NonFiniteValue,
                format!("value {value} is not finite"),
            ));
        }
        if time_ms < self.limits.min_time_ms || time_ms > self.limits.max_time_ms {
            return Err(LineError::new(
                RejectReason::TimestampOutOfRange,
                format!("time {time_ms}ms is outside the accepted range"),
            ));
        }
        self.pending.push((name, time_ms, value));
        Ok(())
    }

    /// Checks the line's tags unless the batch holds them already, then
    /// appends the line.
    fn commit_line(&mut self) -> Result<usize, LineError> {
        let set = match self.line_tags {
            LineTags::Known(set) => Some(set),
            LineTags::Spelled(spelling) => {
                self.check_tags()?;
                Some(self.builder.add_tag_set(spelling, &self.tags))
            }
            LineTags::Parsed => {
                self.check_tags()?;
                None
            }
        };
        let n = self.pending.len();
        for (name, time, value) in self.pending.drain(..) {
            let name = match &name {
                PointName::Whole(name) => name.as_ref(),
                PointName::Joined(measurement, field) => {
                    self.name_buf.clear();
                    self.name_buf.push_str(measurement);
                    self.name_buf.push('.');
                    self.name_buf.push_str(field);
                    &self.name_buf
                }
            };
            match set {
                Some(set) => self.builder.push_tagged(name, time, value, set),
                None => self.builder.push(name, time, value, &self.tags),
            }
        }
        Ok(n)
    }

    /// Renames reserved tag keys, refuses duplicates and tag explosions.
    fn check_tags(&mut self) -> Result<(), LineError> {
        if self.tags.len() > self.limits.max_tags_per_point {
            return Err(LineError::new(
                RejectReason::TooManyTags,
                format!(
                    "{} tags exceed the limit of {} per point",
                    self.tags.len(),
                    self.limits.max_tags_per_point
                ),
            ));
        }
        for (key, _) in self.tags.iter_mut() {
            if key.is_empty() {
                return Err(LineError::new(RejectReason::InvalidSyntax, "empty tag key"));
            }
            if let Cow::Owned(renamed) = tag_column_name(key) {
                *key = Cow::Owned(renamed);
            }
        }
        if let Some(key) = first_duplicate(&self.tags) {
            return Err(LineError::new(
                RejectReason::DuplicateTag,
                format!("tag {key:?} appears twice"),
            ));
        }
        // Only a batch near the limit pays a lookup per tag to count new keys.
        let near_limit = self.builder.tag_columns() + self.tags.len() > self.limits.max_tag_keys;
        let new_keys = if near_limit {
            self.tags
                .iter()
                .filter(|(key, _)| !self.builder.has_tag_column(key))
                .count()
        } else {
            0
        };
        if new_keys > 0 && self.builder.tag_columns() + new_keys > self.limits.max_tag_keys {
            return Err(LineError::new(
                RejectReason::TooManyTags,
                format!(
                    "{new_keys} new tag keys would exceed the limit of {} distinct keys per batch",
                    self.limits.max_tag_keys
                ),
            ));
        }
        Ok(())
    }
}

/// The first key that appears twice. Linear in the tag count for long lines
/// (a hash set); a plain scan for the few tags most points carry.
fn first_duplicate<'t>(tags: &'t Tags<'_>) -> Option<&'t str> {
    if tags.len() <= 16 {
        return tags
            .iter()
            .enumerate()
            .find(|(i, (key, _))| tags[..*i].iter().any(|(k, _)| k == key))
            .map(|(_, (key, _))| key.as_ref());
    }
    let mut seen = std::collections::HashSet::with_capacity(tags.len());
    tags.iter()
        .map(|(key, _)| key.as_ref())
        .find(|key| !seen.insert(*key))
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
    let mut sink = LineSink {
        builder,
        limits,
        record_time_ms,
        tags: Vec::new(),
        line_tags: LineTags::Parsed,
        pending: Vec::new(),
        name_buf: String::new(),
    };
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
        sink.forget_tags();
        sink.pending.clear();
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
