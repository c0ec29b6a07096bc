//! Parquet's RLE / bit-packed hybrid encoding, the encoding of definition
//! levels and dictionary indices (parquet-format `Encodings.md`).
//!
//! parquet-rs keeps its encoder crate-private, so this is the writer's half
//! of the format: runs of at least eight equal values as one RLE run, the
//! rest bit-packed in groups of eight, least significant bit first.

/// Runs shorter than this are bit-packed: an RLE run costs a header and
/// the value, and parquet-rs switches to RLE at the same length.
const MIN_RLE_RUN: usize = 8;

/// Encodes `bit_width`-bit values (at most 32 bits) into `out`.
pub(super) struct HybridEncoder {
    bit_width: u8,
    out: Vec<u8>,
    /// Values waiting to be bit-packed; emitted in whole groups of eight.
    packed: Vec<u32>,
    /// The run being counted: its value and length.
    run_value: u32,
    run_len: usize,
}

impl HybridEncoder {
    /// An encoder appending to `out` (which may hold a prefix already).
    pub(super) fn new(bit_width: u8, out: Vec<u8>) -> Self {
        debug_assert!(bit_width <= 32);
        Self {
            bit_width,
            out,
            packed: Vec::new(),
            run_value: 0,
            run_len: 0,
        }
    }

    pub(super) fn put(&mut self, value: u32) {
        if self.run_len > 0 && value == self.run_value {
            self.run_len += 1;
        } else {
            self.end_run();
            self.run_value = value;
            self.run_len = 1;
        }
    }

    /// Appends `count` copies of `value`.
    pub(super) fn put_repeated(&mut self, value: u32, count: usize) {
        if count == 0 {
            return;
        }
        if self.run_len > 0 && value == self.run_value {
            self.run_len += count;
        } else {
            self.end_run();
            self.run_value = value;
            self.run_len = count;
        }
    }

    /// The encoded bytes; a last bit-packed group is padded with zeros,
    /// which readers skip since they know how many values there are.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.end_run();
        let partial = self.packed.len() % 8;
        if partial != 0 {
            self.packed.resize(self.packed.len() + 8 - partial, 0);
        }
        self.flush_packed();
        self.out
    }

    /// Emits the counted run: it first completes an open bit-packed group
    /// (a group holds eight values), then is RLE if what is left is long
    /// enough, bit-packed otherwise.
    fn end_run(&mut self) {
        let (value, mut len) = (self.run_value, self.run_len);
        self.run_len = 0;
        let open = self.packed.len() % 8;
        if open != 0 {
            let fill = len.min(8 - open);
            self.packed.extend(std::iter::repeat_n(value, fill));
            len -= fill;
        }
        if len >= MIN_RLE_RUN {
            self.flush_packed();
            write_uleb128(&mut self.out, (len as u64) << 1);
            let bytes = usize::from(self.bit_width).div_ceil(8);
            self.out.extend_from_slice(&value.to_le_bytes()[..bytes]);
        } else {
            self.packed.extend(std::iter::repeat_n(value, len));
        }
    }

    /// Emits the waiting values, a multiple of eight, as one bit-packed run.
    fn flush_packed(&mut self) {
        if self.packed.is_empty() {
            return;
        }
        debug_assert_eq!(self.packed.len() % 8, 0);
        let groups = (self.packed.len() / 8) as u64;
        write_uleb128(&mut self.out, (groups << 1) | 1);
        let width = u32::from(self.bit_width);
        self.out.reserve(self.packed.len() * width as usize / 8);
        let (mut bits, mut filled) = (0u64, 0u32);
        for &value in &self.packed {
            bits |= u64::from(value) << filled;
            filled += width;
            while filled >= 8 {
                self.out.push(bits as u8);
                bits >>= 8;
                filled -= 8;
            }
        }
        // Eight values of any width end on a byte boundary.
        debug_assert_eq!(filled, 0);
        self.packed.clear();
    }
}

/// The bits a value up to `max` needs: 0 for a dictionary of one value.
pub(super) fn bit_width(max: u32) -> u8 {
    (u32::BITS - max.leading_zeros()) as u8
}

fn write_uleb128(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of the hybrid encoding, written from the format's text, to
    /// check the writer against something other than itself.
    fn decode(bit_width: u8, mut bytes: &[u8], count: usize) -> Vec<u32> {
        let mut values = Vec::with_capacity(count);
        let uleb = |bytes: &mut &[u8]| {
            let (mut value, mut shift) = (0u64, 0);
            loop {
                let byte = bytes[0];
                *bytes = &bytes[1..];
                value |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte < 0x80 {
                    return value;
                }
            }
        };
        while values.len() < count {
            let header = uleb(&mut bytes);
            if header & 1 == 0 {
                let width = usize::from(bit_width).div_ceil(8);
                let mut raw = [0u8; 4];
                raw[..width].copy_from_slice(&bytes[..width]);
                bytes = &bytes[width..];
                let value = u32::from_le_bytes(raw);
                values.extend(std::iter::repeat_n(value, (header >> 1) as usize));
            } else {
                let n = (header >> 1) as usize * 8;
                let (mut bits, mut filled, mut at) = (0u64, 0u32, 0);
                for _ in 0..n {
                    while filled < u32::from(bit_width) {
                        bits |= u64::from(bytes[at]) << filled;
                        at += 1;
                        filled += 8;
                    }
                    let mask = (1u64 << bit_width) - 1;
                    values.push((bits & mask) as u32);
                    bits >>= bit_width;
                    filled -= u32::from(bit_width);
                }
                bytes = &bytes[at..];
            }
        }
        assert!(bytes.is_empty(), "{} bytes left over", bytes.len());
        values.truncate(count);
        values
    }

    fn round_trip(bit_width: u8, values: &[u32]) {
        let mut encoder = HybridEncoder::new(bit_width, Vec::new());
        for &v in values {
            encoder.put(v);
        }
        let bytes = encoder.finish();
        assert_eq!(decode(bit_width, &bytes, values.len()), values);
    }

    #[test]
    fn runs_and_scatter_round_trip_at_every_width() {
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for bit_width in 0..=32u8 {
            let max = if bit_width == 32 {
                u32::MAX
            } else {
                (1u32 << bit_width) - 1
            };
            let mut values = Vec::new();
            // Runs of every length around the RLE threshold and group size,
            // between scattered values.
            for run in [1, 2, 7, 8, 9, 15, 16, 17, 100] {
                let v = next() & max;
                values.extend(std::iter::repeat_n(v, run));
                for _ in 0..(next() % 11) {
                    values.push(next() & max);
                }
            }
            round_trip(bit_width, &values);
            round_trip(bit_width, &values[..values.len() / 3]);
            round_trip(bit_width, &[max]);
            round_trip(bit_width, &[]);
        }
    }

    #[test]
    fn a_long_run_is_one_rle_run_and_repeats_equal_puts() {
        let mut encoder = HybridEncoder::new(10, Vec::new());
        encoder.put_repeated(513, 1000);
        let bytes = encoder.finish();
        // Header 2000 as ULEB128 (two bytes), then the value in two bytes.
        assert_eq!(bytes, [0xd0, 0x0f, 0x01, 0x02]);
        let mut by_one = HybridEncoder::new(10, Vec::new());
        for _ in 0..1000 {
            by_one.put(513);
        }
        assert_eq!(by_one.finish(), bytes);
    }

    #[test]
    fn widths_are_the_bits_of_the_largest_value() {
        assert_eq!(bit_width(0), 0);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(255), 8);
        assert_eq!(bit_width(256), 9);
        assert_eq!(bit_width(u32::MAX), 32);
    }
}
