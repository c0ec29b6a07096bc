//! Credentials in config: the [`Secret`] newtype that keeps them out of
//! `Debug` and logs, the length rule for klaxon's own, and the redaction of
//! values under secret-named keys from TOML parse errors, which quote the
//! offending source line.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The shortest `api_token` or `signing_key` accepted: an empty token let
/// `routing_key: ""` page anonymously, an empty key let forged links act.
pub const MIN_SECRET_BYTES: usize = 16;

/// A credential from the config file or the environment. `Debug` prints
/// `<redacted>` and there is no `Display`, so neither a `{:?}` of a config
/// nor a log line shows it; code that needs the value derefs to `str`.
/// It serializes as its value, for the one writer that needs it: a config
/// file for a child process (`klaxon bench`).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

impl std::ops::Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Whether a key names a credential, by the words credentials are named
/// with (`api_token`, `signing_key`, `sasl.password`, `auth_token`).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["token", "key", "secret", "password", "passwd", "auth"]
        .iter()
        .any(|word| key.contains(word))
}

/// Refuses a credential shorter than [`MIN_SECRET_BYTES`]; `name` is the
/// key or variable it came from.
pub fn short_secret(name: &str, value: &str) -> Option<String> {
    (value.len() < MIN_SECRET_BYTES).then(|| {
        format!(
            "{name} must be at least {MIN_SECRET_BYTES} bytes long (it has {}): use a random value, e.g. `openssl rand -hex 32`",
            value.len()
        )
    })
}

/// toml's parse errors quote the offending source line, and serde's
/// messages can quote a value in backticks: take every value given to a
/// secret-named key out of `message` (`text` is the parsed source).
pub(super) fn redact_secrets(message: &str, text: &str) -> String {
    let source: Vec<&str> = text.lines().collect();
    let secret_lines = secret_lines(&source);
    let values: Vec<String> = secret_lines
        .iter()
        .filter_map(|(n, from)| source.get(*n).map(|l| l[*from..].trim()))
        .flat_map(|v| [v.to_owned(), v.trim_matches(['"', '\'']).to_owned()])
        .filter(|v| !v.is_empty())
        .collect();
    message
        .lines()
        .map(|line| {
            // An echoed source line: `12 | text`.
            let echoed = line
                .split_once(" | ")
                .and_then(|(n, rest)| Some((n.trim().parse::<usize>().ok()?, rest)));
            match echoed {
                Some((number, rest)) => match secret_lines.get(&number.wrapping_sub(1)) {
                    Some(from) => {
                        let keep = rest.len().min(*from);
                        let head = &line[..line.len() - rest.len()];
                        let space = if keep == 0 { "" } else { " " };
                        format!("{head}{}{space}<redacted>", rest.get(..keep).unwrap_or(""))
                    }
                    None => line.to_owned(),
                },
                None => values.iter().fold(line.to_owned(), |line, v| {
                    line.replace(&format!("`{v}`"), "`<redacted>`")
                        .replace(&format!("\"{v}\""), "\"<redacted>\"")
                }),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The source lines (0-based) that hold a secret's value, each with the byte
/// offset where the value starts: `key = value` lines whose key names a
/// secret, and the lines of a multi-line string such a key opens.
fn secret_lines(source: &[&str]) -> BTreeMap<usize, usize> {
    let mut found = BTreeMap::new();
    let mut n = 0;
    while n < source.len() {
        let line = source[n];
        let Some(from) = secret_value_start(line) else {
            n += 1;
            continue;
        };
        found.insert(n, from);
        let value = line[from..].trim_start();
        let delimiter = ["\"\"\"", "\'\'\'"]
            .into_iter()
            .find(|d| value.starts_with(d));
        n += 1;
        let Some(d) = delimiter.filter(|d| !value[3..].contains(d)) else {
            continue;
        };
        while n < source.len() {
            found.insert(n, 0);
            n += 1;
            if source[n - 1].contains(d) {
                break;
            }
        }
    }
    found
}

/// Where the value of the first secret-named key on `line` starts.
fn secret_value_start(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut key_start = 0;
    for (i, c) in line.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '#' => return None,
            '{' | ',' | '[' => key_start = i + 1,
            '=' if is_secret_key(line[key_start..i].trim()) => return Some(i + 1),
            '=' => key_start = i + 1,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn empty_or_short_credentials_are_refused_with_file_and_key() {
        let err = Config::parse(
            "[notify]\napi_token = \"\"\nsigning_key = \"test-key\"\n",
            Some("klaxon.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("klaxon.toml"), "{err}");
        assert!(
            err.contains("notify.api_token must be at least 16 bytes"),
            "{err}"
        );
        assert!(
            err.contains("notify.signing_key must be at least 16 bytes"),
            "{err}"
        );
        assert!(!err.contains("test-key"), "{err}");
        let c = Config::parse(
            "[notify]\napi_token = \"0123456789abcdef\"\nsigning_key = \"0123456789abcdef\"\n",
            None,
        )
        .unwrap();
        assert_eq!(c.notify.api_token.as_deref(), Some("0123456789abcdef"));
    }

    #[test]
    fn parse_errors_do_not_echo_credentials() {
        let cases = [
            // An unterminated string: toml quotes the line.
            "[notify]\napi_token = \"hunter2-hunter2-hunter2\n",
            // A wrong type: serde quotes the value too.
            "[notify.smtp]\npassword = 73577357\n",
            // An inline table with a later error on the same line.
            "[notify]\ntwilio = { auth_token = \"hunter2-twilio\", from = 5 }\n",
            // A librdkafka property, quoted key.
            "[kafka.properties]\n\"sasl.password\" = \"hunter2-sasl\" x\n",
            // A multi-line string never closed.
            "[notify]\nsigning_key = \"\"\"\nhunter2-multi\nmore\n",
        ];
        for text in cases {
            let err = Config::parse(text, Some("klaxon.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("klaxon.toml"), "{err}");
            assert!(err.contains("<redacted>"), "{text}\n{err}");
            for secret in ["hunter2", "73577357"] {
                assert!(!err.contains(secret), "{text}\n{err}");
            }
        }
        // Lines without credentials are still quoted in full.
        let err = Config::parse("[ingest]\nflush_rows = \"many\"\n", Some("f"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("flush_rows = \"many\""), "{err}");
    }

    #[test]
    fn debug_output_shows_no_credentials() {
        let c = Config::parse(
            r#"
[kafka.properties]
"sasl.password" = "hunter2-sasl"
"sasl.username" = "klaxon-user"
[notify]
api_token = "hunter2-api-token"
signing_key = "hunter2-signing-key"
[notify.twilio]
auth_token = "hunter2-twilio"
[notify.smtp]
password = "hunter2-smtp"
"#,
            None,
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("klaxon-user"), "{shown}");
    }
}
