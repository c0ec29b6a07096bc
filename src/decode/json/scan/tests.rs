//! The scanner against serde_json: property tests over what it takes.

use proptest::prelude::*;

use super::{super::parse_with_serde, *};

/// The point and its tags, as `parse_line` reads a spelling the batch
/// does not know.
fn scan_with_tags<'a>(line: &'a str, tags: &mut Tags<'a>) -> Option<JsonPoint<'a>> {
    let scanned = scan_point(line)?;
    read_tags(scanned.tags, tags)?;
    Some(scanned.point)
}

/// A point as a comparable value; numbers by their bits, so -0.0 and 0.0 differ.
fn fields(point: &JsonPoint<'_>, tags: &Tags<'_>) -> String {
    let scalar = |s: &Option<Scalar<'_>>| match s {
        None => "absent".to_owned(),
        Some(Scalar::Number(n)) => format!("number {:#x}", n.to_bits()),
        Some(Scalar::Text(t)) => format!("text {t:?}"),
        Some(Scalar::Bool(b)) => format!("bool {b}"),
        Some(Scalar::Null) => "null".to_owned(),
        Some(Scalar::Nested) => "nested".to_owned(),
    };
    format!(
        "name {} time {} value {} bad_tags {:?} tags {tags:?}",
        scalar(&point.name),
        scalar(&point.time),
        scalar(&point.value),
        point.bad_tags
    )
}

fn whitespace() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(""), Just(" "), Just("\t"), Just("  \r")]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        // Epoch milliseconds and their near misses (a leading zero, a fraction).
        "[0-9]{12,14}(\\.[0-9])?",
        // Values as most are written, and their near misses.
        "-?[0-9]{1,4}\\.[0-9]{0,4}",
        "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?",
        // Near misses JSON refuses, and values at the edges of f64.
        prop_oneof![
            Just("01"),
            Just("1."),
            Just(".5"),
            Just("-"),
            Just("1e"),
            Just("+1"),
            Just("-0"),
            Just("1e400"),
            Just("-1e400"),
            Just("1e-400"),
            Just("NaN"),
            Just("Infinity"),
            Just("18446744073709551616"),
            Just("9007199254740993"),
            Just("1.7976931348623157e308"),
            Just("0x10"),
            Just("1_0"),
        ]
        .prop_map(str::to_owned),
    ]
}

/// JSON string bodies, some with escapes, control characters or non-ASCII text.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_.-]{0,12}",
        "\\PC{0,8}",
        "[a-z]{0,3}(\\\\[\"\\\\/nt]|\\\\u00e9|\u{1}|\t)[a-z]{0,3}",
    ]
    .prop_map(|body| format!("\"{body}\""))
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => string(),
        4 => number(),
        1 => prop_oneof![Just("true"), Just("false"), Just("null"), Just("tru"), Just("nul")]
            .prop_map(str::to_owned),
        1 => prop_oneof![Just("{\"a\":1}"), Just("[1]"), Just("{}"), Just("[]")]
            .prop_map(str::to_owned),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"name\"".to_owned()),
        Just("\"time\"".to_owned()),
        Just("\"value\"".to_owned()),
        Just("\"tags\"".to_owned()),
        Just("\"na\\u006de\"".to_owned()),
        string(),
    ]
}

fn tags_value() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => scalar(),
        4 => proptest::collection::vec((string(), whitespace(), scalar()), 0..4).prop_map(
            |entries| {
                let entries: Vec<String> = entries
                    .into_iter()
                    .map(|(k, ws, v)| format!("{k}{ws}:{ws}{v}"))
                    .collect();
                format!("{{{}}}", entries.join(","))
            }
        ),
    ]
}

/// Lines near the point shape: fields in any order, repeated or missing,
/// odd whitespace, and a cut or stray tail now and then.
fn line() -> impl Strategy<Value = String> {
    let field = (
        key(),
        whitespace(),
        prop_oneof![3 => scalar(), 1 => tags_value()],
    )
        .prop_map(|(k, ws, v)| format!("{k}{ws}:{ws}{v}"));
    (
        whitespace(),
        proptest::collection::vec(field, 0..6),
        whitespace(),
        prop_oneof![8 => Just(""), 1 => Just("}"), 1 => Just(",")],
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(lead, fields, trail, tail, cut, do_cut)| {
            let mut line = format!("{lead}{{{}}}{trail}{tail}", fields.join(","));
            if do_cut && !line.is_empty() {
                let mut at = cut.index(line.len());
                while !line.is_char_boundary(at) {
                    at -= 1;
                }
                line.truncate(at);
            }
            line
        })
}

/// Lines in or near the usual layout: its pieces drawn as [`line`]
/// draws values, and a space, a cut or a stray tail now and then.
fn usual_line() -> impl Strategy<Value = String> {
    (
        string(),
        prop_oneof![4 => number(), 1 => scalar()],
        prop_oneof![4 => number(), 1 => scalar()],
        prop_oneof![4 => tags_value(), 1 => Just(String::new())],
        prop_oneof![8 => Just(""), 1 => Just(" "), 1 => Just("}"), 1 => Just(",")],
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(name, time, value, tags, tail, cut, do_cut)| {
            let tags = if tags.is_empty() {
                tags
            } else {
                format!(",\"tags\":{tags}")
            };
            let mut line =
                format!("{{\"name\":{name},\"time\":{time},\"value\":{value}{tags}}}{tail}");
            if do_cut {
                let mut at = cut.index(line.len());
                while !line.is_char_boundary(at) {
                    at -= 1;
                }
                line.truncate(at);
            }
            line
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8192))]

    /// Whatever the usual-layout path takes, serde_json reads the same
    /// way, tags and all.
    #[test]
    fn the_usual_layout_agrees_with_serde_json(line in usual_line()) {
        // As parse_line takes it: a batch knows a spelling only once it
        // has read it whole, so reading it whole stands for both.
        let mut known_tags = Vec::new();
        let took = scan_usual_layout(&line)
            .filter(|usual| read_tags(usual.tags, &mut known_tags).is_some())
            .map(|usual| JsonPoint {
                name: Some(Scalar::Text(usual.name.into())),
                time: Some(Scalar::Number(usual.time)),
                value: Some(Scalar::Number(usual.value)),
                bad_tags: None,
            });
        if let Some(point) = took {
            let mut serde_tags = Vec::new();
            let parsed = parse_with_serde(&line, &mut serde_tags)
                .unwrap_or_else(|e| panic!("took {line:?} but serde refused it: {e:?}"));
            prop_assert_eq!(fields(&point, &known_tags), fields(&parsed, &serde_tags), "{}", line);
        }
    }

    /// Whatever the scanner accepts, serde_json reads the same way.
    #[test]
    fn the_scanner_agrees_with_serde_json(line in line()) {
        let mut scanned_tags = Vec::new();
        if let Some(scanned) = scan_with_tags(&line, &mut scanned_tags) {
            let mut serde_tags = Vec::new();
            let parsed = parse_with_serde(&line, &mut serde_tags)
                .unwrap_or_else(|e| panic!("scanned {line:?} but serde refused it: {e:?}"));
            prop_assert_eq!(fields(&scanned, &scanned_tags), fields(&parsed, &serde_tags), "{}", line);
        }
    }

    /// Numbers read on the fast path round as a correct parser rounds them.
    #[test]
    fn numbers_round_correctly(text in "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,22})?") {
        let mut scanner = Scanner { line: &text, pos: 0 };
        let expected: f64 = text.parse().unwrap();
        prop_assert_eq!(scanner.number().map(f64::to_bits), Some(expected.to_bits()), "{}", text);
    }

    /// Epoch milliseconds read eight bytes at a time are what
    /// `number` reads, and only a plain 13-digit integer is taken.
    #[test]
    fn epoch_ms_agrees_with_number(
        (text, at, byte) in (
            "[0-9]{11,15}([,.eE][0-9]?)?,?",
            0..14usize,
            prop_oneof![3 => Just(None), 1 => any::<char>().prop_map(Some)],
        )
    ) {
        // Now and then one of the first fourteen bytes (all ASCII) is
        // replaced by any character, so each word's check must refuse it.
        let mut text = text;
        if let Some(other) = byte.filter(|_| at < text.len()) {
            text.replace_range(at..at + 1, other.encode_utf8(&mut [0; 4]));
        }
        let mut fast = Scanner { line: &text, pos: 0 };
        let mut slow = Scanner { line: &text, pos: 0 };
        if let Some(time) = fast.epoch_ms() {
            prop_assert_eq!(Some(time.to_bits()), slow.number().map(f64::to_bits), "{}", text);
            prop_assert_eq!(fast.pos, slow.pos, "{}", text);
            prop_assert_eq!(fast.pos, 13);
            prop_assert!(!text.starts_with('0') && text.as_bytes()[13] == b',', "{}", text);
        } else {
            prop_assert_eq!(fast.pos, 0);
            let digits = text.bytes().take_while(u8::is_ascii_digit).count();
            prop_assert!(
                digits != 13 || text.starts_with('0') || text.as_bytes().get(13) != Some(&b','),
                "{}", text
            );
        }
    }

    /// Short decimals read from one word are what `number` reads, and
    /// only `[-](0|[1-9]digits).digits` of six digits at most, ended
    /// inside the word by a byte that cannot go on with the number, is
    /// taken.
    #[test]
    fn short_decimal_agrees_with_number(
        text in "-?[0-9]{0,7}(\\.[0-9]{0,6})?([eE][0-9])?[,}x.]?[0-9,]{0,8}"
    ) {
        let mut fast = Scanner { line: &text, pos: 0 };
        let mut slow = Scanner { line: &text, pos: 0 };
        let shape = regex::Regex::new(r"^-?(0|[1-9][0-9]*)\.[0-9]+[^0-9eE]").unwrap();
        if let Some(value) = fast.short_decimal() {
            prop_assert_eq!(Some(value.to_bits()), slow.number().map(f64::to_bits), "{}", text);
            prop_assert_eq!(fast.pos, slow.pos, "{}", text);
            prop_assert!(shape.is_match(&text), "{}", text);
            let digits = text[..fast.pos].bytes().filter(u8::is_ascii_digit).count();
            prop_assert!(digits <= 6, "{}", text);
        } else {
            prop_assert_eq!(fast.pos, 0);
            // Refused only for more digits, or fewer than eight bytes to read.
            if let Some(taken) = shape.find(&text) {
                let digits = taken.as_str().bytes().filter(u8::is_ascii_digit).count();
                let start = usize::from(text.starts_with('-'));
                prop_assert!(digits > 6 || text.len() < start + 8, "{}", text);
            }
        }
    }

    /// A whole token reads as `str::parse` reads it, whenever it is a
    /// number in JSON's grammar; other tokens are left to `str::parse`.
    #[test]
    fn number_tokens_read_as_str_parse_does(
        token in prop_oneof![
            "-?[0-9]{1,7}(\\.[0-9]{0,7})?",
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
            "[-+.0-9eEinfa]{0,10}",
        ]
    ) {
        let json = regex::Regex::new(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$").unwrap();
        match number_token(&token) {
            Some(value) => {
                prop_assert!(json.is_match(&token), "{}", token);
                prop_assert_eq!(Some(value.to_bits()), token.parse::<f64>().ok().map(f64::to_bits), "{}", token);
            }
            None => prop_assert!(
                !json.is_match(&token) || !token.parse::<f64>().is_ok_and(f64::is_finite),
                "{}", token
            ),
        }
    }

    /// The digit count is the first non-digit's place, whatever follows.
    #[test]
    fn leading_digits_matches_a_byte_loop(bytes in proptest::array::uniform8(
        prop_oneof![4 => b'0'..=b'9', 1 => any::<u8>(), 1 => Just(b'/'), 1 => Just(b':')]
    )) {
        let expected = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        prop_assert_eq!(leading_digits(u64::from_le_bytes(bytes)), expected);
    }

    /// The eight-byte test finds what a byte loop finds.
    #[test]
    fn first_special_matches_a_byte_loop(bytes in proptest::array::uniform8(
        prop_oneof![Just(b'"'), Just(b'\\'), Just(0u8), Just(0x1f), Just(0x20), Just(0x21),
                    Just(0x5b), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()]
    )) {
        let expected = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        prop_assert_eq!(first_special(u64::from_le_bytes(bytes)), expected);
    }

    /// Producers' points take the scanner's path, whatever their values.
    #[test]
    fn plain_points_are_scanned(
        name in "[a-z][a-z0-9_.]{0,20}",
        time in 0i64..4_000_000_000_000,
        value in any::<f64>().prop_filter("finite", |v| v.is_finite()),
        tags in proptest::collection::btree_map("[a-z]{1,8}", "[a-z0-9-]{0,12}", 0..5),
    ) {
        let line = serde_json::json!({"name": name, "time": time, "value": value, "tags": tags})
            .to_string();
        let mut scanned_tags = Vec::new();
        let point = scan_with_tags(&line, &mut scanned_tags);
        prop_assert!(point.is_some(), "{}", line);
        let point = point.unwrap();
        prop_assert!(matches!(point.value, Some(Scalar::Number(v)) if v.to_bits() == value.to_bits()), "{}", line);
        prop_assert!(matches!(point.time, Some(Scalar::Number(t)) if t == time as f64), "{}", line);
        prop_assert_eq!(scanned_tags.len(), tags.len());
    }
}

#[test]
fn edges_of_the_shape() {
    let scan = |line: &str| {
        let mut tags = Vec::new();
        scan_with_tags(line, &mut tags).map(|p| fields(&p, &tags))
    };
    // Scanned: negative zero stays negative, and big integers round as serde rounds them.
    let negative_zero = scan("{\"name\":\"a\",\"value\":-0}").unwrap();
    assert!(
        negative_zero.contains(&format!("{:#x}", (-0.0f64).to_bits())),
        "{negative_zero}"
    );
    assert!(
        scan(" { \"tags\" : null , \"x\" : [1] } ").is_none(),
        "nested values go to serde"
    );
    assert!(
        scan("{\"name\":\"a\\nb\"}").is_none(),
        "escapes go to serde"
    );
    assert!(
        scan("{\"value\":1e400}").is_none(),
        "out of range goes to serde"
    );
    assert!(scan("{\"value\":1}x").is_none());
    assert!(scan("{}").is_some());
}
