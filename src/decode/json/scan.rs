//! A scanner for the shape nearly every point has: one flat object whose
//! strings carry no escapes, with `tags` a flat object of scalars.
//!
//! It reads the line once, borrowing every string, and yields the same
//! [`JsonPoint`] serde would. Anything outside that shape (an escape, a
//! nested value, a control character, a number out of range, bad syntax)
//! makes it give up, and the line goes through serde_json, which decides
//! and words the rejection. So the scanner only has to be right about what
//! it accepts, and a property test checks that against serde_json.

use super::{JsonPoint, Scalar, tag_text};
use crate::decode::Tags;

/// A point's fields as the scanner read them.
pub(super) struct Scanned<'a> {
    pub(super) point: JsonPoint<'a>,
    /// How the line spells its tags: its `tags` object as written, or empty
    /// when it has none (absent or null). The batch finds a tag set it
    /// already holds by this, so only a spelling it has not seen is read
    /// into tags ([`read_tags`]).
    pub(super) tags: &'a str,
}

/// A line in the usual layout, as [`scan_usual_layout`] read it: the
/// fields themselves, with none of [`JsonPoint`]'s room for other shapes.
pub(super) struct Usual<'a> {
    pub(super) name: &'a str,
    /// Epoch milliseconds, as the line's number reads.
    pub(super) time: f64,
    pub(super) value: f64,
    /// As [`Scanned::tags`].
    pub(super) tags: &'a str,
}

/// The point on `line`, or `None` to hand the line to serde_json.
pub(super) fn scan_point(line: &str) -> Option<Scanned<'_>> {
    let mut s = Scanner { line, pos: 0 };
    let mut point = JsonPoint::default();
    let mut tags = None;
    s.skip_whitespace();
    s.object(|s, key| {
        // A repeated key behaves as in serde: the last value wins. Tags
        // would accumulate, so one spelling would not say the line's
        // tags: a second `tags` goes to serde.
        match key {
            "name" => point.name = Some(s.scalar()?),
            "time" => point.time = Some(s.scalar()?),
            "value" => point.value = Some(s.scalar()?),
            "tags" if tags.is_none() => tags = Some(s.skip_tags()?),
            "tags" => return None,
            _ => {
                s.scalar()?;
            }
        }
        Some(())
    })?;
    s.skip_whitespace();
    (s.pos == line.len()).then_some(Scanned {
        point,
        tags: tags.unwrap_or_default(),
    })
}

/// The fields of a line in the layout producers nearly always write,
/// `{"name":"…","time":N,"value":N,"tags":{…}}` with no whitespace (or no
/// `tags`); `None` for any other line, which [`scan_point`] reads. Only the
/// literal parts, the name and the numbers are checked here, not the tags:
/// the line is good if the batch knows its tags spelling (one read whole
/// before) or [`read_tags`] reads the spelling whole now.
pub(super) fn scan_usual_layout(line: &str) -> Option<Usual<'_>> {
    let mut s = Scanner { line, pos: 0 };
    s.literal_bytes(b"{\"name\":")?;
    let name = s.string()?;
    s.literal_bytes(b",\"time\":")?;
    let time = match s.epoch_ms() {
        Some(time) => time,
        None => s.number()?,
    };
    s.literal_bytes(b",\"value\":")?;
    let value = match s.short_decimal() {
        Some(value) => value,
        None => s.number()?,
    };
    let rest = &line[s.pos..];
    let tags = if rest == "}" {
        ""
    } else {
        // A JSON spelling starts with `{`: another format's, in a batch
        // shared by formats, must not complete this line.
        let tags = rest.strip_prefix(",\"tags\":")?.strip_suffix('}')?;
        if !tags.starts_with('{') {
            return None;
        }
        tags
    };
    Some(Usual {
        name,
        time,
        value,
        tags,
    })
}

/// Appends the tags a [`Scanned::tags`] spelling holds; `None` if it is not
/// one (the caller clears `tags`).
pub(super) fn read_tags<'a>(spelling: &'a str, tags: &mut Tags<'a>) -> Option<()> {
    if spelling.is_empty() {
        return Some(());
    }
    let mut s = Scanner {
        line: spelling,
        pos: 0,
    };
    s.object(|s, key| {
        if let Some(text) = tag_text(s.scalar()?).ok()? {
            tags.push((key.into(), text));
        }
        Some(())
    })?;
    (s.pos == spelling.len()).then_some(())
}

/// The digits of a number read so far, as one integer.
#[derive(Default)]
struct Mantissa {
    /// Meaningless past 19 digits, where it may have wrapped.
    value: u64,
    digits: usize,
}

impl Mantissa {
    /// Whether `value` holds every digit: any 19 fit in a u64, so the
    /// digits are added without a check each.
    fn exact(&self) -> bool {
        self.digits <= 19
    }
}

const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The offset of the first byte of `word` (little-endian) that ends a plain
/// string: a quote, a backslash or a control character. The classic SWAR
/// tests can flag bytes above a true hit, never below it, so the lowest flag
/// is exact.
fn first_special(word: u64) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let found = quote | backslash | control;
    (found != 0).then(|| found.trailing_zeros() as usize / 8)
}

/// How many of the first bytes of `word` (little-endian) are ASCII digits.
/// Subtracting `0` from each byte sets the high bit of bytes below 0x30 and
/// from 0xB0 up; adding 0x46 sets it for 0x3A to 0xB9; a digit sets
/// neither. Borrows and carries only move flags above the lowest non-digit,
/// so the lowest flag is exact.
fn leading_digits(word: u64) -> usize {
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = word.wrapping_sub(0x3030_3030_3030_3030);
    let above = word.wrapping_add(0x4646_4646_4646_4646);
    ((below | above) & HIGHS).trailing_zeros() as usize / 8
}

/// The number the eight ASCII digits of `word` spell, the first in the low
/// byte: pairs, then fours, then all eight, by multiplication.
fn eight_digits(word: u64) -> u64 {
    let digits = word.wrapping_sub(0x3030_3030_3030_3030);
    let pairs = digits.wrapping_mul(10).wrapping_add(digits >> 8);
    ((pairs & 0x0000_00ff_0000_00ff)
        .wrapping_mul(100 + (1_000_000 << 32))
        .wrapping_add(((pairs >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(1 + (10_000 << 32))))
        >> 32
}

/// `digits.digits` at the start of `word` (little-endian), at most six
/// digits in all and in JSON's grammar (no leading zero but `0` itself,
/// digits on both sides of the point), then a byte that is not a digit,
/// inside the word: the number, and the offset of that byte. The digits
/// form one integer below 10^6, exact in f64, divided by an exact power of
/// ten: the same f64 as [`Scanner::number`] and `str::parse`.
fn short_decimal(word: u64) -> Option<(f64, usize)> {
    let whole = leading_digits(word);
    let first = word as u8;
    // Six digits and the point leave at most five before it; the bound also
    // keeps every shift below under 64 bits.
    if whole == 0 || whole > 5 || (whole > 1 && first == b'0') {
        return None;
    }
    if (word >> (8 * whole)) as u8 != b'.' {
        return None;
    }
    // The bytes after the point; those shifted in are zeros, not digits.
    let after_point = word >> (8 * (whole + 1));
    let fraction = leading_digits(after_point);
    let end = whole + 1 + fraction;
    if fraction == 0 || end >= 8 {
        return None;
    }
    let digits = whole + fraction;
    let whole_bytes = word & ((1 << (8 * whole)) - 1);
    let fraction_bytes = after_point & ((1 << (8 * fraction)) - 1);
    // The digits without the point, as the high bytes of a word whose low
    // bytes are '0's: leading zeros of the same number.
    let joined = whole_bytes | (fraction_bytes << (8 * whole));
    let word = (joined << (8 * (8 - digits))) | (0x3030_3030_3030_3030 >> (8 * digits));
    Some((eight_digits(word) as f64 / POWERS_OF_TEN[fraction], end))
}

/// The number a whole token spells when it is one in JSON's grammar, as
/// JSON's numbers are read (the nearest f64, as `str::parse` reads it);
/// `None` for anything else, including what `str::parse` takes besides
/// (`inf`, `+1`, `.5`, `1.`) and numbers too large for f64. Graphite and
/// Influx values are nearly all plain decimals, read here without
/// `str::parse`'s general algorithm.
pub(in crate::decode) fn number_token(token: &str) -> Option<f64> {
    let bytes = token.as_bytes();
    let negative = bytes.first() == Some(&b'-');
    let unsigned = &bytes[usize::from(negative)..];
    if unsigned.len() < 8 {
        // Padded to a word with a byte that ends a number.
        let mut padded = [b' '; 8];
        padded[..unsigned.len()].copy_from_slice(unsigned);
        if let Some((magnitude, end)) = short_decimal(u64::from_le_bytes(padded)) {
            if end == unsigned.len() {
                return Some(if negative { -magnitude } else { magnitude });
            }
        }
    }
    let mut s = Scanner {
        line: token,
        pos: 0,
    };
    let value = s.number()?;
    (s.pos == token.len()).then_some(value)
}

struct Scanner<'a> {
    line: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.line.as_bytes().get(self.pos).copied()
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.pos += usize::from(found);
        found
    }

    #[inline]
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// `"..."` with no escape and no control character.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.pos;
        let bytes = self.line.as_bytes();
        // Eight bytes at a time while they hold nothing special.
        while let Some(word) = bytes.get(self.pos..self.pos + 8) {
            match first_special(u64::from_le_bytes(word.try_into().ok()?)) {
                Some(offset) => {
                    self.pos += offset;
                    break;
                }
                None => self.pos += 8,
            }
        }
        loop {
            match *bytes.get(self.pos)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
        // Both ends sit next to an ASCII quote, so they are char boundaries.
        let text = &self.line[start..self.pos];
        self.pos += 1;
        Some(text)
    }

    /// A string, number, boolean or null.
    #[inline]
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => self.string().map(|s| Scalar::Text(s.into())),
            b't' => self.literal("true", Scalar::Bool(true)),
            b'f' => self.literal("false", Scalar::Bool(false)),
            b'n' => self.literal("null", Scalar::Null),
            b'-' | b'0'..=b'9' => self.number().map(Scalar::Number),
            _ => None,
        }
    }

    /// Exactly `bytes`, next.
    #[inline]
    fn literal_bytes(&mut self, bytes: &[u8]) -> Option<()> {
        self.line.as_bytes()[self.pos..]
            .starts_with(bytes)
            .then(|| {
                self.pos += bytes.len();
            })
    }

    fn literal(&mut self, word: &str, value: Scalar<'a>) -> Option<Scalar<'a>> {
        self.line[self.pos..].starts_with(word).then(|| {
            self.pos += word.len();
            value
        })
    }

    /// A number in JSON's grammar, read as the nearest f64 (as serde_json
    /// does with `float_roundtrip`). One too large for f64 is left to serde,
    /// which refuses it.
    #[inline]
    fn number(&mut self) -> Option<f64> {
        let start = self.pos;
        let negative = self.eat(b'-');
        let mut mantissa = Mantissa::default();
        if !self.eat(b'0') {
            self.digits(&mut mantissa)?;
        }
        let mut scale = 0;
        if self.eat(b'.') {
            scale = self.digits(&mut mantissa)?;
        }
        let exponent = self.eat(b'e') || self.eat(b'E');
        if exponent {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.digits(&mut Mantissa::default())?;
        }
        // Clinger's fast path: an integer below 2^53 and a power of ten up to
        // 10^22 are both exact in f64, so one division rounds correctly.
        if !exponent && mantissa.exact() && mantissa.value < 1 << 53 && scale <= 22 {
            let magnitude = mantissa.value as f64 / POWERS_OF_TEN[scale];
            return Some(if negative { -magnitude } else { magnitude });
        }
        let value: f64 = self.line[start..self.pos].parse().ok()?;
        value.is_finite().then_some(value)
    }

    /// Epoch milliseconds as nearly every point spells them: thirteen
    /// digits, the first not a zero, then the comma that ends the number.
    /// Two eight-byte reads instead of a loop whose exit the branch
    /// predictor misses on every number. `None` for anything else, which
    /// [`Self::number`] reads.
    #[inline]
    fn epoch_ms(&mut self) -> Option<f64> {
        let bytes = self.line.as_bytes().get(self.pos..self.pos + 14)?;
        if bytes[0] == b'0' || bytes[13] != b',' {
            return None;
        }
        let head = u64::from_le_bytes(bytes[..8].try_into().ok()?);
        let tail = u64::from_le_bytes(bytes[5..13].try_into().ok()?);
        if leading_digits(head) != 8 || leading_digits(tail) != 8 {
            return None;
        }
        self.pos += 13;
        // The tail's first three bytes are the head's last three: as '0's
        // they add nothing.
        let tail = (tail & !0xff_ffff) | 0x30_3030;
        Some((eight_digits(head) * 100_000 + eight_digits(tail)) as f64)
    }

    /// A plain decimal as most values are spelled, `[-]digits.digits` with
    /// at most six digits, read from one eight-byte word (see
    /// [`short_decimal`]); `None` for anything else, which [`Self::number`]
    /// reads. The same f64 as `number`.
    #[inline]
    fn short_decimal(&mut self) -> Option<f64> {
        let bytes = self.line.as_bytes();
        let negative = bytes.get(self.pos) == Some(&b'-');
        let start = self.pos + usize::from(negative);
        let word = u64::from_le_bytes(bytes.get(start..start + 8)?.try_into().ok()?);
        let (magnitude, end) = short_decimal(word)?;
        // An exponent would go on with the number.
        if matches!(bytes[start + end], b'e' | b'E') {
            return None;
        }
        self.pos = start + end;
        Some(if negative { -magnitude } else { magnitude })
    }

    /// One or more ASCII digits, accumulated into `mantissa`; how many.
    #[inline]
    fn digits(&mut self, mantissa: &mut Mantissa) -> Option<usize> {
        let start = self.pos;
        let mut value = mantissa.value;
        for &byte in &self.line.as_bytes()[start..] {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
            self.pos += 1;
        }
        let count = self.pos - start;
        mantissa.value = value;
        mantissa.digits += count;
        (count > 0).then_some(count)
    }

    /// `null` or a flat object of scalars, read past: how it is spelled
    /// (empty for `null`), for [`read_tags`].
    fn skip_tags(&mut self) -> Option<&'a str> {
        if self.peek() == Some(b'n') {
            return self.literal("null", Scalar::Null).map(|_| "");
        }
        let start = self.pos;
        self.object(|s, _| s.scalar().map(drop))?;
        Some(&self.line[start..self.pos])
    }

    /// `{ "key": value, ... }`, calling `field` at each value with its key.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        self.skip_whitespace();
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            field(self, key)?;
            self.skip_whitespace();
            if !self.eat(b',') {
                return self.expect(b'}');
            }
            self.skip_whitespace();
        }
    }
}

#[cfg(test)]
mod tests;
