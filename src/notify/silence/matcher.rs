//! Label matchers as Alertmanager writes them: `name=value`, `name!=value`,
//! `name=~regex`, `name!~regex`. A label the alert lacks reads as the empty
//! string, so `team!=db` matches an alert without `team`, and `team=""`
//! matches only those. A regex must match the whole value (it is anchored,
//! as Alertmanager anchors it).

use std::{collections::BTreeMap, fmt, str::FromStr};

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A matcher's longest value, and its regex's compiled size: a silence is
/// small, and a regex built from user input must not take the notifier's
/// memory or time.
pub const MAX_MATCHER_VALUE_BYTES: usize = 1024;
pub const MAX_LABEL_NAME_BYTES: usize = 128;
const MAX_REGEX_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
        }
    }
}

/// One matcher of a silence.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    /// The anchored regex, for `=~` and `!~`.
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl Matcher {
    /// Whether the alert with these labels is matched.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.name).map_or("", String::as_str);
        match (&self.op, &self.regex) {
            (Op::Equal, _) => value == self.value,
            (Op::NotEqual, _) => value != self.value,
            (Op::Regex, Some(re)) => re.is_match(value),
            (Op::NotRegex, Some(re)) => !re.is_match(value),
            (Op::Regex | Op::NotRegex, None) => unreachable!("regex matchers hold their regex"),
        }
    }

    /// Whether the matcher matches an alert that lacks its label: a silence
    /// of nothing but such matchers would silence every alert.
    pub fn matches_empty(&self) -> bool {
        self.matches(&BTreeMap::new())
    }
}

impl fmt::Display for Matcher {
    /// Writes it so that it reads back the same: a value that is empty,
    /// starts with a quote or space, ends with a space or holds a control
    /// character is written quoted, with JSON's escapes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.value;
        let quote =
            v.is_empty() || v.starts_with('"') || v.trim() != v || v.chars().any(char::is_control);
        if quote {
            let quoted = serde_json::to_string(v).map_err(|_| fmt::Error)?;
            write!(f, "{}{}{quoted}", self.name, self.op.as_str())
        } else {
            write!(f, "{}{}{v}", self.name, self.op.as_str())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("{0:?}: a matcher is label=value, label!=value, label=~regex or label!~regex")]
    Shape(String),
    #[error(
        "{0:?}: a label name is letters, digits and _, not starting with a digit, at most {MAX_LABEL_NAME_BYTES} bytes"
    )]
    Name(String),
    #[error("{0:?}: a quoted value is one JSON string: \"...\" with \\\" for a quote inside")]
    Quote(String),
    #[error("{0:?}: the value is longer than {MAX_MATCHER_VALUE_BYTES} bytes")]
    TooLong(String),
    #[error("{text:?}: not a regex: {reason}")]
    Regex { text: String, reason: String },
}

impl Matcher {
    /// A matcher of `name`; `text` is how it was written, for errors.
    fn new(text: &str, name: &str, op: Op, value: String) -> Result<Self, MatcherError> {
        if name.len() > MAX_LABEL_NAME_BYTES || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(MatcherError::Name(text.to_owned()));
        }
        if value.len() > MAX_MATCHER_VALUE_BYTES {
            return Err(MatcherError::TooLong(text.to_owned()));
        }
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(
                RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(MAX_REGEX_BYTES)
                    .build()
                    .map_err(|e| MatcherError::Regex {
                        text: text.to_owned(),
                        reason: e.to_string().lines().last().unwrap_or("").trim().to_owned(),
                    })?,
            ),
            Op::Equal | Op::NotEqual => None,
        };
        Ok(Self {
            name: name.to_owned(),
            op,
            value,
            regex,
        })
    }
}

impl FromStr for Matcher {
    type Err = MatcherError;

    fn from_str(text: &str) -> Result<Self, MatcherError> {
        let text = text.trim();
        let name_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| MatcherError::Shape(text.to_owned()))?;
        let (name, rest) = text.split_at(name_end);
        if name.is_empty() {
            return Err(MatcherError::Shape(text.to_owned()));
        }
        let rest = rest.trim_start();
        let op = [Op::NotEqual, Op::Regex, Op::NotRegex, Op::Equal]
            .into_iter()
            .find(|op| rest.starts_with(op.as_str()))
            .ok_or_else(|| MatcherError::Shape(text.to_owned()))?;
        let value = rest[op.as_str().len()..].trim();
        // A quoted value, as Alertmanager's amtool writes them, is one whole
        // string with its escapes: `x=""""` is refused, not read as `x=""`.
        let value = if value.starts_with('"') {
            serde_json::from_str::<String>(value)
                .map_err(|_| MatcherError::Quote(text.to_owned()))?
        } else {
            value.to_owned()
        };
        Self::new(text, name, op, value)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(in crate::notify) mod tests {
    use super::*;

    /// An alert's labels, for tests.
    pub(in crate::notify) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(text: &str) -> Matcher {
        text.parse().unwrap()
    }

    #[test]
    fn the_four_operators_as_alertmanager_reads_them() {
        let checkout = labels(&[("service", "checkout"), ("severity", "warning")]);
        assert!(m("service=checkout").matches(&checkout));
        assert!(!m("service!=checkout").matches(&checkout));
        assert!(m("severity=~warn.*").matches(&checkout));
        assert!(!m("severity!~warn.*").matches(&checkout));
        // Anchored: a regex matches the whole value, not a part of it.
        assert!(!m("severity=~warn").matches(&checkout));
        assert!(!m("service=~out").matches(&checkout));
        assert!(m("service=~check.*|db").matches(&checkout));
        // A missing label reads as "".
        assert!(m("team!=db").matches(&checkout));
        assert!(m(r#"team="""#).matches(&checkout));
        assert!(!m("team=~.+").matches(&checkout));
        assert!(m("team!~.+").matches_empty());
        assert!(!m("service=checkout").matches_empty());
    }

    #[test]
    fn spellings_quotes_and_round_trips() {
        let quoted = m(r#"severity =~ "warn.*""#);
        assert_eq!(quoted.to_string(), "severity=~warn.*");
        assert_eq!(m(&quoted.to_string()), quoted);
        // Whatever a value holds, it is written so that it reads back alike.
        for value in [
            "",
            "\"",
            "\"\"",
            " a ",
            "a\"b",
            "\\",
            "tab\there",
            "x\ny",
            "é",
        ] {
            for op in [Op::Equal, Op::NotEqual, Op::Regex, Op::NotRegex] {
                let Ok(matcher) = Matcher::new("test", "x", op, value.to_owned()) else {
                    continue; // not a regex
                };
                let text = matcher.to_string();
                assert_eq!(m(&text), matcher, "{value:?} as {text}");
            }
        }
        assert_eq!(m(r#"team="""#).to_string(), r#"team="""#);
        // A quote that does not close one string is refused, not guessed.
        for bad in [r#"x="""""#, r#"x=""""#, r#"x="a"#, r#"x="a"b""#] {
            assert!(
                matches!(bad.parse::<Matcher>(), Err(MatcherError::Quote(_))),
                "{bad}"
            );
        }
        let json = serde_json::to_string(&m("a!=b=c")).unwrap();
        assert_eq!(json, r#""a!=b=c""#);
        assert_eq!(serde_json::from_str::<Matcher>(&json).unwrap().value, "b=c");
    }

    #[test]
    fn bad_matchers_say_why() {
        let long_name = format!("{}=y", "n".repeat(MAX_LABEL_NAME_BYTES + 1));
        for (text, expect) in [
            ("service", "a matcher is"),
            ("=x", "a matcher is"),
            ("service~x", "a matcher is"),
            ("1x=y", "a label name"),
            (long_name.as_str(), "a label name"),
            ("a=~(", "not a regex"),
            ("a=~x{100000}{100000}", "not a regex"),
        ] {
            let err = text.parse::<Matcher>().unwrap_err().to_string();
            assert!(err.contains(expect), "{text}: {err}");
        }
        let long = format!("a={}", "x".repeat(MAX_MATCHER_VALUE_BYTES + 1));
        assert!(matches!(
            long.parse::<Matcher>(),
            Err(MatcherError::TooLong(_))
        ));
    }
}
