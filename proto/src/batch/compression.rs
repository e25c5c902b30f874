//! The compression codecs a RecordBatch's attributes can name, in the byte
//! formats Kafka's own clients write, so that batches compressed by any
//! Kafka client decode here and ours decode there:
//!
//! - gzip: one gzip stream (several concatenated members are accepted).
//! - snappy: the xerial "snappy-java" framing Kafka's Java client writes: a
//!   16-byte header (`\x82SNAPPY\0`, version 1, compatible version 1), then
//!   blocks of `[compressed length: i32 BE][raw snappy block]`. A batch that
//!   lacks the header is read as one raw snappy block, as snappy-java does.
//! - lz4: the LZ4 frame format with independent blocks of at most 64 KiB
//!   and no content checksum, the subset Kafka's reader requires.
//! - zstd: one or more zstd frames.
//!
//! Every codec here is pure Rust. Decompression is capped at
//! [`DECOMPRESSED_LEN_MAX`] bytes whatever the input claims.

use std::io::{Read, Write};

use super::{BatchError, Compression};

/// Most bytes one batch's records may decompress to. A batch is at most a
/// few MiB on the wire, and real data rarely compresses more than 20:1, so a
/// legitimate batch stays far below this; the cap stops a corrupt or hostile
/// batch (a "zip bomb") from making a reader allocate without bound.
pub const DECOMPRESSED_LEN_MAX: usize = 128 * 1024 * 1024;

/// Uncompressed bytes per xerial snappy block: snappy-java's default, which
/// Kafka's Java producer uses.
const SNAPPY_BLOCK_LEN_MAX: usize = 32 * 1024;
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_VERSION: i32 = 1;
const XERIAL_COMPATIBLE_VERSION: i32 = 1;
const XERIAL_HEADER_LEN: usize = 16;

/// Compresses `data` (a batch's encoded records) with `codec`.
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 2 + 64),
                flate2::Compression::default(),
            );
            encoder.write_all(data).expect("writing to a Vec cannot fail");
            Ok(encoder.finish().expect("writing to a Vec cannot fail"))
        }
        Compression::Snappy => Ok(xerial_snappy_compress(data)),
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            encoder.write_all(data).expect("writing to a Vec cannot fail");
            Ok(encoder.finish().expect("writing to a Vec cannot fail"))
        }
        Compression::Zstd => {
            Ok(ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest))
        }
    }
}

/// Decompresses a batch's records, refusing output past
/// [`DECOMPRESSED_LEN_MAX`].
pub fn decompress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    decompress_bounded(codec, data, DECOMPRESSED_LEN_MAX)
}

/// [`decompress`] with an explicit output bound, so tests can exercise it.
fn decompress_bounded(
    codec: Compression,
    data: &[u8],
    len_max: usize,
) -> Result<Vec<u8>, BatchError> {
    let out = match codec {
        // Stored as is: nothing to bound beyond the batch itself.
        Compression::None => return Ok(data.to_vec()),
        Compression::Gzip => {
            read_bounded(flate2::read::MultiGzDecoder::new(data), len_max, "corrupt gzip data")?
        }
        Compression::Snappy => xerial_snappy_decompress(data, len_max)?,
        Compression::Lz4 => {
            read_bounded(lz4_flex::frame::FrameDecoder::new(data), len_max, "corrupt lz4 frame")?
        }
        Compression::Zstd => zstd_decompress(data, len_max)?,
    };
    assert!(out.len() <= len_max, "every codec path checks the bound");
    Ok(out)
}

/// Reads a decoder to its end, failing once it yields more than `len_max`.
fn read_bounded(
    reader: impl Read,
    len_max: usize,
    corrupt: &'static str,
) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    // One byte past the bound tells "exactly at the bound" from "over it".
    reader
        .take(len_max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| BatchError::Malformed(corrupt))?;
    if out.len() > len_max {
        return Err(too_big());
    }
    Ok(out)
}

fn too_big() -> BatchError {
    BatchError::Malformed("records decompress to more than DECOMPRESSED_LEN_MAX bytes")
}

fn xerial_snappy_compress(data: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(XERIAL_HEADER_LEN + snap::raw::max_compress_len(data.len()) + 4);
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    out.extend_from_slice(&XERIAL_COMPATIBLE_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for chunk in data.chunks(SNAPPY_BLOCK_LEN_MAX) {
        let length_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let block_at = out.len();
        out.resize(block_at + snap::raw::max_compress_len(chunk.len()), 0);
        let block_len = encoder
            .compress(chunk, &mut out[block_at..])
            .expect("the output was sized with max_compress_len");
        out.truncate(block_at + block_len);
        let block_len =
            i32::try_from(block_len).expect("a 32 KiB chunk compresses to far less than 2 GiB");
        out[length_at..block_at].copy_from_slice(&block_len.to_be_bytes());
    }
    out
}

fn xerial_snappy_decompress(data: &[u8], len_max: usize) -> Result<Vec<u8>, BatchError> {
    let mut decoder = snap::raw::Decoder::new();
    if !data.starts_with(&XERIAL_MAGIC) {
        let mut out = Vec::new();
        snappy_block_into(&mut decoder, data, &mut out, len_max)?;
        return Ok(out);
    }
    if data.len() < XERIAL_HEADER_LEN {
        return Err(BatchError::Malformed("truncated xerial snappy header"));
    }
    let mut out = Vec::new();
    let mut pos = XERIAL_HEADER_LEN;
    while pos < data.len() {
        let length_bytes = data
            .get(pos..pos + 4)
            .ok_or(BatchError::Malformed("truncated xerial snappy block length"))?;
        let block_len = i32::from_be_bytes(length_bytes.try_into().expect("four bytes"));
        pos += 4;
        let block_end = usize::try_from(block_len)
            .ok()
            .and_then(|len| pos.checked_add(len))
            .filter(|&end| end <= data.len())
            .ok_or(BatchError::Malformed("xerial snappy block runs past the end"))?;
        snappy_block_into(&mut decoder, &data[pos..block_end], &mut out, len_max)?;
        pos = block_end;
    }
    Ok(out)
}

/// Appends one raw snappy block's contents to `out`, checking the length the
/// block announces against the bound before allocating for it.
fn snappy_block_into(
    decoder: &mut snap::raw::Decoder,
    block: &[u8],
    out: &mut Vec<u8>,
    len_max: usize,
) -> Result<(), BatchError> {
    let block_out_len = snap::raw::decompress_len(block)
        .map_err(|_| BatchError::Malformed("corrupt snappy block"))?;
    let start = out.len();
    if block_out_len > len_max - start {
        return Err(too_big());
    }
    out.resize(start + block_out_len, 0);
    let written = decoder
        .decompress(block, &mut out[start..])
        .map_err(|_| BatchError::Malformed("corrupt snappy block"))?;
    if written != block_out_len {
        return Err(BatchError::Malformed("snappy block shorter than it announces"));
    }
    Ok(())
}

fn zstd_decompress(data: &[u8], len_max: usize) -> Result<Vec<u8>, BatchError> {
    const CORRUPT: &str = "corrupt zstd data";
    let mut out = Vec::new();
    let mut input = data;
    // Kafka writes one frame, but the format allows several back to back.
    while !input.is_empty() {
        let decoder = ruzstd::decoding::StreamingDecoder::new(&mut input)
            .map_err(|_| BatchError::Malformed(CORRUPT))?;
        let room = (len_max - out.len()) as u64;
        decoder.take(room + 1).read_to_end(&mut out).map_err(|_| BatchError::Malformed(CORRUPT))?;
        if out.len() > len_max {
            return Err(too_big());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect()
    }

    #[test]
    fn every_codec_round_trips_empty_small_and_multi_block_inputs() {
        // 200 KiB spans several snappy (32 KiB) and lz4 (64 KiB) blocks.
        for len in [0, 1, 100, 200 * 1024] {
            let data = sample(len);
            for codec in CODECS {
                let packed = compress(codec, &data).unwrap();
                assert_eq!(decompress(codec, &packed).unwrap(), data, "{codec:?}, {len} bytes");
            }
        }
    }

    #[test]
    fn snappy_writes_the_xerial_framing_kafka_java_reads() {
        let data = sample(70 * 1024);
        let packed = compress(Compression::Snappy, &data).unwrap();
        assert_eq!(&packed[..8], &XERIAL_MAGIC);
        assert_eq!(&packed[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        // 70 KiB in 32 KiB blocks is three blocks; walk them by their lengths.
        let mut pos = XERIAL_HEADER_LEN;
        let mut blocks = 0;
        while pos < packed.len() {
            let len = i32::from_be_bytes(packed[pos..pos + 4].try_into().unwrap()) as usize;
            pos += 4 + len;
            blocks += 1;
        }
        assert_eq!((blocks, pos), (3, packed.len()));
    }

    #[test]
    fn snappy_without_xerial_header_is_read_as_one_raw_block() {
        let data = sample(5000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(Compression::Snappy, &raw).unwrap(), data);
    }

    #[test]
    fn lz4_frame_header_has_the_flags_kafka_requires() {
        let packed = compress(Compression::Lz4, b"hello hello hello").unwrap();
        assert_eq!(&packed[..4], &0x184D_2204u32.to_le_bytes());
        let flg = packed[4];
        assert_eq!(flg >> 6, 1, "version 1");
        assert_eq!(flg & 0x20, 0x20, "independent blocks");
        assert_eq!(flg & 0x03, 0, "reserved bits and no dictionary");
        assert_eq!((packed[5] >> 4) & 0x07, 4, "64 KiB blocks");
    }

    #[test]
    fn decompression_past_the_bound_is_refused() {
        let data = vec![0u8; 10_000];
        for codec in CODECS.into_iter().skip(1) {
            let packed = compress(codec, &data).unwrap();
            assert_eq!(decompress_bounded(codec, &packed, 10_000).unwrap().len(), 10_000);
            assert!(decompress_bounded(codec, &packed, 9_999).is_err(), "{codec:?}");
        }
    }

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
    }

    const INTEROP_TEXT: &[u8] =
        b"xo interop: the quick brown fox jumps over the lazy dog, the quick brown fox jumps over the lazy dog.";

    #[test]
    fn frames_from_the_reference_zstd_and_lz4_tools_decode() {
        // `printf %s "$INTEROP_TEXT" | zstd -c` (zstd 1.5, with a content checksum).
        let zstd = unhex(
            "28b52ffd0458f501004403786f20696e7465726f703a2074686520717569636b2062726f776e20666f78206a756d7073\
             206f7665726c617a7920646f672c2e020041658e84a0ca76d66e3b",
        );
        assert_eq!(decompress(Compression::Zstd, &zstd).unwrap(), INTEROP_TEXT);
        // Two frames back to back read as their concatenation.
        let twice = [zstd.as_slice(), zstd.as_slice()].concat();
        assert_eq!(
            decompress(Compression::Zstd, &twice).unwrap(),
            [INTEROP_TEXT, INTEROP_TEXT].concat()
        );
        // `lz4 -c` (lz4 1.9: 4 MiB blocks, content checksum).
        let lz4 = unhex(
            "04224d186440a744000000f11b786f20696e7465726f703a2074686520717569636b2062726f776e20666f78206a756d70\
             73206f7665721f00916c617a7920646f672c0e000f2d00105020646f672e000000007252fcb5",
        );
        assert_eq!(decompress(Compression::Lz4, &lz4).unwrap(), INTEROP_TEXT);
    }

    proptest! {
        #[test]
        fn codecs_round_trip(data in proptest::collection::vec(any::<u8>(), 0..3000), pick in 0usize..5) {
            let codec = CODECS[pick];
            let packed = compress(codec, &data).unwrap();
            prop_assert_eq!(decompress(codec, &packed).unwrap(), data);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600), pick in 1usize..5) {
            let _ = decompress_bounded(CODECS[pick], &data, 1 << 20);
        }

        #[test]
        fn corrupted_compressed_data_never_panics(
            data in proptest::collection::vec(any::<u8>(), 1..2000),
            pick in 1usize..5,
            at in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let codec = CODECS[pick];
            let mut packed = compress(codec, &data).unwrap();
            let i = at.index(packed.len());
            packed[i] ^= flip;
            let _ = decompress_bounded(codec, &packed, 1 << 20);
        }
    }
}
