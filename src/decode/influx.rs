//! Influx line protocol:
//! `measurement[,tag=v...] field=value[,field=value...] [timestamp_ns]`.
//!
//! Each numeric field becomes one point named `measurement.field`, or just
//! `measurement` for a field called `value`. Integers (`1i`, `1u`) and floats
//! are kept, booleans become 1 and 0, string fields are skipped (they are not
//! metrics); a line with no numeric field is rejected. Timestamps are
//! nanoseconds; a missing one means the record's Kafka timestamp.

use std::borrow::Cow;

use super::{LineError, LineSink, PointName, RejectReason};

pub(super) fn parse_line<'a>(line: &'a str, sink: &mut LineSink<'_, 'a>) -> Result<(), LineError> {
    let syntax = |m: &str| LineError::new(RejectReason::InvalidSyntax, m.to_owned());
    let line = line.trim_start();

    // Series: measurement and tags, up to the first unescaped space.
    let (series, rest) = split_unescaped(line, b' ', false);
    let rest = rest.ok_or_else(|| syntax("expected fields after the measurement"))?;
    let (measurement, mut tags) = split_unescaped(series, b',', false);
    if measurement.is_empty() {
        return Err(syntax("empty measurement"));
    }
    // The tag set is spelled from the comma after the measurement on, and
    // a batch that has seen the spelling need not read it again.
    if sink.known_tags(&series.as_bytes()[measurement.len()..]) {
        tags = None;
    }
    while let Some(t) = tags {
        let (pair, more) = split_unescaped(t, b',', false);
        let (key, value) = split_unescaped(pair, b'=', false);
        let value = value.ok_or_else(|| syntax("a tag must be `key=value`"))?;
        if value.is_empty() {
            return Err(syntax("a tag has an empty value"));
        }
        sink.tags.push((unescape(key), unescape(value)));
        tags = more;
    }

    // Fields, up to the first unescaped space outside a string.
    let (fields, timestamp) = split_unescaped(rest.trim_start(), b' ', true);
    let time_ms = match timestamp.map(str::trim).filter(|t| !t.is_empty()) {
        None => sink.record_time_ms,
        Some(t) => {
            let ns: i64 = t.parse().map_err(|_| {
                LineError::new(
                    RejectReason::BadTimestamp,
                    format!("timestamp {t:?} is not integer nanoseconds"),
                )
            })?;
            ns.div_euclid(1_000_000)
        }
    };
    let measurement = unescape(measurement);
    let mut numeric = 0;
    let mut rest = Some(fields);
    while let Some(f) = rest {
        let (pair, more) = split_unescaped(f, b',', true);
        rest = more;
        let (key, value) = split_unescaped(pair, b'=', true);
        let value = value.ok_or_else(|| syntax("a field must be `key=value`"))?;
        if key.is_empty() {
            return Err(syntax("empty field key"));
        }
        let Some(value) = field_value(value)? else {
            continue;
        };
        let name = if key == "value" {
            PointName::Whole(measurement.clone())
        } else {
            PointName::Joined(measurement.clone(), unescape(key))
        };
        sink.point(name, time_ms, value)?;
        numeric += 1;
    }
    if numeric == 0 {
        return Err(LineError::new(
            RejectReason::NonNumericValue,
            "the line has no numeric field",
        ));
    }
    Ok(())
}

/// A field's value as a number, `None` for a string field.
fn field_value(text: &str) -> Result<Option<f64>, LineError> {
    if text.starts_with('"') {
        if text.len() < 2 || !text.ends_with('"') {
            return Err(LineError::new(
                RejectReason::InvalidSyntax,
                "unterminated string field",
            ));
        }
        return Ok(None);
    }
    let number = match text {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Some(1.0)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Some(0.0)),
        _ => text
            .strip_suffix('i')
            .or_else(|| text.strip_suffix('u'))
            .unwrap_or(text),
    };
    super::parse_value(number).map(Some).map_err(|_| {
        LineError::new(
            RejectReason::NonNumericValue,
            format!("field value {text:?} is not a number"),
        )
    })
}

/// Splits at the first `delim` not preceded by a backslash (and, if
/// `quotes`, not inside a double-quoted string).
fn split_unescaped(s: &str, delim: u8, quotes: bool) -> (&str, Option<&str>) {
    let bytes = s.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'"' if quotes => in_string = !in_string,
            b if b == delim && !in_string => return (&s[..i], Some(&s[i + 1..])),
            _ => {}
        }
        i += 1;
    }
    (s, None)
}

/// Removes the backslash of `\,`, `\=`, `\ ` and `\\`; borrows when there is none.
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | '=' | ' ' | '\\' | '"')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::super::{Format, testing::*};
    use super::*;

    #[test]
    fn one_point_per_numeric_field() {
        let (table, rejects) = decode_to_table(
            Format::Influx,
            "cpu,host=web\\ 1,region=eu usage=0.5,count=3i,up=t,state=\"ok, fine\" 1700000000000000000\n",
        );
        assert!(rejects.is_empty(), "{rejects:?}");
        for row in [
            "cpu.usage | 0.5   | web 1 | eu",
            "cpu.count | 3.0",
            "cpu.up    | 1.0",
        ] {
            assert!(table.contains(row), "{table}\nwanted {row}");
        }
        assert!(!table.contains("state"), "{table}");
    }

    #[test]
    fn value_field_keeps_the_measurement_name_and_time_is_optional() {
        let (table, _) = decode_to_table(Format::Influx, "temp value=21.5\n");
        assert!(
            table.contains("2023-11-14T22:13:20Z | temp | 21.5"),
            "{table}"
        );
    }

    #[test]
    fn rejects() {
        let (_, rejects) = decode_to_table(
            Format::Influx,
            "cpu\ncpu,host usage=1\ncpu usage=abc\ncpu msg=\"text only\"\ncpu usage=1 soon\n",
        );
        assert_eq!(
            reasons(&rejects),
            [
                "invalid_syntax",
                "invalid_syntax",
                "non_numeric_value",
                "non_numeric_value",
                "bad_timestamp",
            ]
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"a\,b\=c\ d"), "a,b=c d");
        assert_eq!(
            split_unescaped(r"a\ b c", b' ', false),
            (r"a\ b", Some("c"))
        );
        assert_eq!(
            split_unescaped(r#"s="x y",n=1 5"#, b' ', true),
            (r#"s="x y",n=1"#, Some("5"))
        );
    }
}
