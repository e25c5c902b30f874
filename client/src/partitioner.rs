//! Which partition a record goes to: the explicit one if the record names
//! it; otherwise, for a keyed record, Kafka's default — murmur2 of the key
//! bytes, made positive, modulo the partition count — so the same key maps
//! to the same partition as it would from a Kafka Java client; for a record
//! with neither, the producer's "sticky" partition (see
//! `producer::accumulator`).

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), a
/// stable hash: the value for a key never changes between versions.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate().rev() {
            h ^= (b as u32) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record among `partitions` partitions.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    // Kafka's `Utils.toPositive`: clear the sign bit (not `abs`, which
    // would map i32::MIN onto itself).
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    positive % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_murmur2_matches_kafka() {
        // Proves: keys land where a Kafka Java producer puts them. The
        // values are those of Kafka's own UtilsTest.
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            ("abc", 479_470_107),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key.as_bytes()), hash, "{key}");
        }
    }

    #[test]
    fn t11_partition_for_key_is_stable_and_in_range() {
        for partitions in 1..20 {
            for i in 0..200 {
                let key = format!("key-{i}");
                let p = partition_for_key(key.as_bytes(), partitions);
                assert!(p < partitions);
                assert_eq!(p, partition_for_key(key.as_bytes(), partitions));
            }
        }
        // Known placements: toPositive(murmur2("foobar")) % 10.
        assert_eq!(partition_for_key(b"foobar", 10), ((-790_332_482i32 & 0x7fff_ffff) % 10) as u32);
    }

    #[test]
    fn t12_keys_spread_over_partitions() {
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            counts[partition_for_key(format!("k{i}").as_bytes(), 8) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (700..1300).contains(&c)), "{counts:?}");
    }
}
