//! Zigzag varints, as the RecordBatch v2 record fields use them (the
//! protobuf encoding: 7 bits a byte, low group first, sign folded into bit 0).

use super::BatchError;

/// Longest encoding of a 64-bit varint.
pub const VARLONG_LEN_MAX: usize = 10;
/// Longest encoding of a 32-bit varint.
pub const VARINT_LEN_MAX: usize = 5;

pub fn zigzag_encode(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

pub fn zigzag_decode(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// Appends `value` as a zigzag varint.
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = zigzag_encode(value);
    loop {
        let byte = (raw & 0x7f) as u8;
        raw >>= 7;
        if raw == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Number of bytes `put_varlong(value)` writes.
pub fn varlong_len(value: i64) -> usize {
    let raw = zigzag_encode(value);
    let bits = 64 - raw.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Reads a zigzag varint at `*pos`, advancing it. Fails on a truncated or
/// over-long encoding, or one that does not fit `len_max` bytes.
fn get_varint_bounded(buf: &[u8], pos: &mut usize, len_max: usize) -> Result<i64, BatchError> {
    let mut raw: u64 = 0;
    for i in 0..len_max {
        let byte = *buf.get(*pos + i).ok_or(BatchError::Malformed("truncated varint"))?;
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            *pos += i + 1;
            return Ok(zigzag_decode(raw));
        }
    }
    Err(BatchError::Malformed("varint too long"))
}

pub fn get_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, BatchError> {
    get_varint_bounded(buf, pos, VARLONG_LEN_MAX)
}

pub fn get_varint(buf: &[u8], pos: &mut usize) -> Result<i32, BatchError> {
    let value = get_varint_bounded(buf, pos, VARINT_LEN_MAX)?;
    i32::try_from(value).map_err(|_| BatchError::Malformed("varint out of i32 range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varlong_round_trips(value in any::<i64>()) {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            prop_assert_eq!(out.len(), varlong_len(value));
            let mut pos = 0;
            prop_assert_eq!(get_varlong(&out, &mut pos).unwrap(), value);
            prop_assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn known_encodings() {
        // Zigzag: 0 → 0, -1 → 1, 1 → 2, 63 → 126, -64 → 127, 64 → 128 (two bytes).
        for (value, bytes) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (-64, vec![127]),
            (64, vec![0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out, bytes, "encoding of {value}");
        }
    }

    #[test]
    fn truncated_and_overlong_are_errors() {
        let mut pos = 0;
        assert!(get_varlong(&[0x80], &mut pos).is_err());
        let mut pos = 0;
        assert!(get_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &mut pos).is_err());
    }
}
