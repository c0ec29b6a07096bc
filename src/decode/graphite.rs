//! Graphite plaintext: `path value timestamp`, and tagged paths
//! `path;tag=value;tag2=value2 value timestamp` (Graphite 1.1 tags).
//!
//! The timestamp is in epoch seconds (fractions allowed); `-1` or a missing
//! timestamp means the record's Kafka timestamp, as carbon uses "now".

use std::borrow::Cow;

use super::{LineError, LineSink, PointName, RejectReason};

pub(super) fn parse_line<'a>(line: &'a str, sink: &mut LineSink<'_, 'a>) -> Result<(), LineError> {
    let mut fields = line.split_ascii_whitespace();
    let (Some(path), Some(value)) = (fields.next(), fields.next()) else {
        return Err(LineError::new(
            RejectReason::InvalidSyntax,
            "expected `path value [timestamp]`",
        ));
    };
    let timestamp = fields.next();
    if fields.next().is_some() {
        return Err(LineError::new(
            RejectReason::InvalidSyntax,
            "expected `path value [timestamp]`, found more fields",
        ));
    }
    // Separators are found by plain byte loops: a path is short, and
    // `str::split`'s searcher cost more than the scan.
    let (name, mut rest) = split_at_byte(path, b';');
    // The tag set is spelled from its first `;` on, and a batch that has
    // seen the spelling need not read it again.
    if sink.known_series(name, &path.as_bytes()[name.len()..]) {
        rest = None;
    }
    while let Some(tags) = rest {
        let (tag, more) = split_at_byte(tags, b';');
        rest = more;
        let (k, Some(v)) = split_at_byte(tag, b'=') else {
            return Err(LineError::new(
                RejectReason::InvalidSyntax,
                format!("tag {tag:?} is not `key=value`"),
            ));
        };
        if v.is_empty() {
            return Err(LineError::new(
                RejectReason::InvalidSyntax,
                format!("tag {k:?} has an empty value"),
            ));
        }
        sink.tags.push((Cow::Borrowed(k), Cow::Borrowed(v)));
    }
    let value = super::parse_value(value).map_err(|_| {
        LineError::new(
            RejectReason::NonNumericValue,
            format!("value {value:?} is not a number"),
        )
    })?;
    let time_ms = match timestamp {
        None | Some("-1") => sink.record_time_ms,
        Some(t) => parse_epoch_seconds_ms(t)?,
    };
    sink.point(PointName::Whole(Cow::Borrowed(name)), time_ms, value)
}

/// `text` up to the first `separator`, and what follows it if there is one.
fn split_at_byte(text: &str, separator: u8) -> (&str, Option<&str>) {
    match text.bytes().position(|b| b == separator) {
        // An ASCII byte is always a char boundary.
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    }
}

fn parse_epoch_seconds_ms(text: &str) -> Result<i64, LineError> {
    let bad = || {
        LineError::new(
            RejectReason::BadTimestamp,
            format!("timestamp {text:?} is not epoch seconds"),
        )
    };
    if let Ok(seconds) = text.parse::<i64>() {
        return seconds.checked_mul(1000).ok_or_else(bad);
    }
    let seconds: f64 = text.parse().map_err(|_| bad())?;
    if !seconds.is_finite() || seconds.abs() > 9.0e12 {
        return Err(bad());
    }
    Ok((seconds * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::super::{Format, testing::*};

    #[test]
    fn plain_and_tagged() {
        let (table, rejects) = decode_to_table(
            Format::Graphite,
            "servers.web1.cpu 12.5 1700000000\ndisk.used;host=web1;dc=ams 0.75 1700000000.5\n# comment\n",
        );
        assert!(rejects.is_empty(), "{rejects:?}");
        // Column widths adapt to content, so compare rows, not the frame.
        for row in [
            "servers.web1.cpu | 12.5",
            "disk.used        | 0.75  | ams | web1",
        ] {
            assert!(table.contains(row), "{table}\nwanted {row}");
        }
    }

    #[test]
    fn missing_or_minus_one_timestamp_uses_record_time() {
        let (table, _) = decode_to_table(Format::Graphite, "a 1\nb 2 -1\n");
        assert_eq!(table.matches("2023-11-14T22:13:20Z").count(), 2, "{table}");
    }

    #[test]
    fn rejects() {
        let (_, rejects) = decode_to_table(
            Format::Graphite,
            "lonely\na x 1\na 1 soon\na;novalue 1 1\na nan 1\na 1 1 extra\n",
        );
        assert_eq!(
            reasons(&rejects),
            [
                "invalid_syntax",
                "non_numeric_value",
                "bad_timestamp",
                "invalid_syntax",
                "non_finite_value",
                "invalid_syntax",
            ]
        );
    }
}
