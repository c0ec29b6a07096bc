//! The JSON point of DESIGN.md:
//! `{"name": "...", "time": "RFC 3339" | epoch_ms, "value": 1.0, "tags": {"k": "v"}}`.
//!
//! Unknown keys are ignored so producers can add fields. Tag values may be
//! strings, numbers or booleans (stored as their text); a null tag is absent.

use std::{borrow::Cow, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor},
};

mod scan;

pub(super) use scan::number_token;

use super::{LineError, LineSink, PointName, RejectReason, Tags};

/// The fields of one point; tags go straight into the line's reusable scratch.
#[derive(Default)]
struct JsonPoint<'a> {
    name: Option<Scalar<'a>>,
    time: Option<Scalar<'a>>,
    value: Option<Scalar<'a>>,
    /// A `tags` value that is not an object (or a bad tag value inside it).
    bad_tags: Option<String>,
}

/// Deserializes a point, appending its tags to `tags` without allocating a
/// collection per point.
struct PointSeed<'s, 'a> {
    tags: &'s mut Tags<'a>,
}

impl<'de, 's> DeserializeSeed<'de> for PointSeed<'s, 'de> {
    type Value = JsonPoint<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 's> Visitor<'de> for PointSeed<'s, 'de> {
    type Value = JsonPoint<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut point = JsonPoint::default();
        while let Some(key) = m.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "name" => point.name = Some(m.next_value()?),
                "time" => point.time = Some(m.next_value()?),
                "value" => point.value = Some(m.next_value()?),
                "tags" => {
                    point.bad_tags = m.next_value_seed(TagsSeed {
                        tags: &mut *self.tags,
                    })?
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(point)
    }
}

/// `tags`: an object of string, number or boolean values, or null. Yields
/// `Some(problem)` for anything else rather than failing the JSON parse, so
/// the rejection reason says what is wrong.
struct TagsSeed<'s, 'a> {
    tags: &'s mut Tags<'a>,
}

impl<'de, 's> DeserializeSeed<'de> for TagsSeed<'s, 'de> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 's> Visitor<'de> for TagsSeed<'s, 'de> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of tags")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut problem = None;
        while let Some((key, value)) = m.next_entry::<Cow<'de, str>, Scalar<'de>>()? {
            match tag_text(value) {
                Ok(Some(text)) => self.tags.push((key, text)),
                Ok(None) => {}
                Err(()) => {
                    problem.get_or_insert_with(|| {
                        format!("tag {key:?} must be a string, number or boolean")
                    });
                }
            }
        }
        Ok(problem)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Some("\"tags\" must be an object".to_owned()))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Some("\"tags\" must be an object".to_owned()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some("\"tags\" must be an object".to_owned()))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some("\"tags\" must be an object".to_owned()))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Some("\"tags\" must be an object".to_owned()))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some("\"tags\" must be an object".to_owned()))
    }
}

/// The text a tag value is stored as: `None` for null (the tag is absent),
/// `Err` for an object or array.
fn tag_text(value: Scalar<'_>) -> Result<Option<Cow<'_, str>>, ()> {
    match value {
        Scalar::Text(s) => Ok(Some(s)),
        Scalar::Number(n) => Ok(Some(Cow::Owned(n.to_string()))),
        Scalar::Bool(b) => Ok(Some(Cow::Borrowed(if b { "true" } else { "false" }))),
        Scalar::Null => Ok(None),
        Scalar::Nested => Err(()),
    }
}

/// Any JSON value, keeping only what a point can use.
enum Scalar<'a> {
    Number(f64),
    Text(Cow<'a, str>),
    Bool(bool),
    Null,
    /// An object or array.
    Nested,
}

impl Scalar<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Number(_) => "a number",
            Scalar::Text(_) => "a string",
            Scalar::Bool(_) => "a boolean",
            Scalar::Null => "null",
            Scalar::Nested => "an object or array",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Number(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested)
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn parse_line<'a>(line: &'a str, sink: &mut LineSink<'_, 'a>) -> Result<(), LineError> {
    if let Some(usual) = scan::scan_usual_layout(line) {
        if sink.known_series(usual.name, usual.tags.as_bytes())
            || scan::read_tags(usual.tags, &mut sink.tags).is_some()
        {
            return sink.point(
                PointName::Whole(Cow::Borrowed(usual.name)),
                epoch_ms(usual.time)?,
                usual.value,
            );
        }
        sink.forget_tags();
    }
    let scanned = scan::scan_point(line).and_then(|scanned| {
        let known = sink.known_tags(scanned.tags.as_bytes());
        (known || scan::read_tags(scanned.tags, &mut sink.tags).is_some()).then_some(scanned.point)
    });
    let point = match scanned {
        Some(point) => point,
        None => {
            sink.forget_tags();
            parse_with_serde(line, &mut sink.tags)?
        }
    };
    point_to_sink(point, sink)
}

/// Any JSON at all: what the scanner leaves, and the reference it is tested against.
fn parse_with_serde<'a>(line: &'a str, tags: &mut Tags<'a>) -> Result<JsonPoint<'a>, LineError> {
    let mut de = serde_json::Deserializer::from_str(line);
    PointSeed { tags }
        .deserialize(&mut de)
        .and_then(|p| de.end().map(|()| p))
        .map_err(|e| LineError::new(RejectReason::InvalidJson, e.to_string()))
}

/// Checks a parsed point's fields and queues it.
fn point_to_sink<'a>(point: JsonPoint<'a>, sink: &mut LineSink<'_, 'a>) -> Result<(), LineError> {
    if let Some(problem) = point.bad_tags {
        return Err(LineError::new(RejectReason::InvalidSyntax, problem));
    }
    let name = match point.name {
        Some(Scalar::Text(name)) => name,
        None | Some(Scalar::Null) => {
            return Err(LineError::new(
                RejectReason::MissingField,
                "missing \"name\"",
            ));
        }
        Some(other) => {
            return Err(LineError::new(
                RejectReason::InvalidSyntax,
                format!("\"name\" must be a string, not {}", other.kind()),
            ));
        }
    };
    let value = match point.value {
        Some(Scalar::Number(v)) => v,
        None | Some(Scalar::Null) => {
            return Err(LineError::new(
                RejectReason::MissingField,
                "missing \"value\"",
            ));
        }
        Some(other) => {
            return Err(LineError::new(
                RejectReason::NonNumericValue,
                format!("\"value\" must be a number, not {}", other.kind()),
            ));
        }
    };
    let time_ms = match point.time {
        None | Some(Scalar::Null) => sink.record_time_ms,
        Some(Scalar::Number(ms)) => epoch_ms(ms)?,
        Some(Scalar::Text(text)) => parse_rfc3339_ms(&text)?,
        Some(other) => return Err(bad_time(other.kind())),
    };
    sink.point(PointName::Whole(name), time_ms, value)
}

/// A `time` number as epoch milliseconds: any number a point's time can be
/// (within about 285,000 years of 1970; the limits then bound it further).
fn epoch_ms(ms: f64) -> Result<i64, LineError> {
    if ms.is_finite() && ms.abs() < 9.0e15 {
        Ok(ms as i64)
    } else {
        Err(bad_time(Scalar::Number(ms).kind()))
    }
}

fn bad_time(kind: &str) -> LineError {
    LineError::new(
        RejectReason::BadTimestamp,
        format!("\"time\" must be RFC 3339 text or epoch milliseconds, not {kind}"),
    )
}

pub(super) fn parse_rfc3339_ms(text: &str) -> Result<i64, LineError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            LineError::new(
                RejectReason::BadTimestamp,
                format!("time {text:?} is not RFC 3339: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::super::{Format, testing::*};

    #[test]
    fn decodes_the_design_example() {
        let (table, rejects) = decode_to_table(
            Format::Json,
            r#"{"name": "http.server.errors", "time": "2026-11-24T10:00:00Z", "value": 3.0, "tags": {"service": "checkout", "host": "web-3"}}"#,
        );
        assert!(rejects.is_empty(), "{rejects:?}");
        let expected = "\
+----------------------+--------------------+-------+-------+----------+
| time                 | name               | value | host  | service  |
+----------------------+--------------------+-------+-------+----------+
| 2026-11-24T10:00:00Z | http.server.errors | 3.0   | web-3 | checkout |
+----------------------+--------------------+-------+-------+----------+";
        assert_eq!(table, expected);
    }

    #[test]
    fn epoch_ms_numbers_escapes_and_missing_time() {
        let (table, rejects) = decode_to_table(
            Format::Json,
            "{\"name\":\"a\\\"b\",\"time\":1700000000123,\"value\":1,\"tags\":{\"n\":7,\"ok\":true,\"gone\":null}}\n{\"name\":\"c\",\"value\":-2.5}",
        );
        assert!(rejects.is_empty(), "{rejects:?}");
        assert!(table.contains("2023-11-14T22:13:20.123Z | a\"b"), "{table}");
        assert!(table.contains("| 7 "), "{table}");
        assert!(table.contains("| true "), "{table}");
        assert!(!table.contains("gone"), "{table}");
        // No time: the record's Kafka timestamp.
        assert!(table.contains("2023-11-14T22:13:20Z     | c"), "{table}");
    }

    #[test]
    fn each_bad_point_gets_its_reason() {
        let (_, rejects) = decode_to_table(
            Format::Json,
            concat!(
                "{\"time\":1,\"value\":1}\n",
                "{\"name\":\"a\",\"time\":1}\n",
                "{\"name\":\"a\",\"time\":1,\"value\":\"3\"}\n",
                "{\"name\":\"a\",\"time\":\"yesterday\",\"value\":1}\n",
                "{\"name\":\"a\",\"time\":1,\"value\":1,\"tags\":{\"k\":[1]}}\n",
                "[1,2]\n",
                "{\"name\":\"a\",\"time\":1,\"value\":1e999}\n",
            ),
        );
        assert_eq!(
            reasons(&rejects),
            [
                "missing_field",
                "missing_field",
                "non_numeric_value",
                "bad_timestamp",
                "invalid_syntax",
                "invalid_json",
                "invalid_json",
            ]
        );
    }
}
