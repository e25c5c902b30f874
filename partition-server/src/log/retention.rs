//! Which segments retention deletes — pure logic; `Log::apply_retention`
//! does the I/O.
//!
//! Retention only ever deletes a prefix of whole segments, oldest first, so
//! the log stays one contiguous range of offsets starting at the first
//! remaining segment's base offset. The active segment is never deleted:
//! it holds the log end, and deleting it would lose the next offset.

use xo_proto::Offset;

/// What retention needs to know about one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFacts {
    pub base_offset: Offset,
    pub size_bytes: u64,
    /// The segment's largest record timestamp (or, without timestamps, the
    /// time its file was last written).
    pub timestamp_ms: i64,
}

/// The limits, as in `LogConfig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionLimits {
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
}

/// How many segments, from the front of `segments` (oldest first, the last
/// being the active one), to delete at `now_ms`:
///
/// - by age: the leading segments whose largest timestamp is more than
///   `retention_ms` before `now_ms`. The first young segment stops the run,
///   even if older-looking ones follow (timestamps are the producers' and
///   need not grow), because only a prefix can go.
/// - by size: the oldest segments, while the whole log is larger than
///   `retention_bytes`.
///
/// The larger of the two prefixes wins; never the active segment.
pub fn segments_to_delete(
    segments: &[SegmentFacts],
    now_ms: i64,
    limits: RetentionLimits,
) -> usize {
    assert!(!segments.is_empty(), "a log always has its active segment");
    assert!(
        segments.windows(2).all(|w| w[0].base_offset < w[1].base_offset),
        "segments out of order"
    );
    let deletable = &segments[..segments.len() - 1];

    let by_age = match limits.retention_ms {
        Some(retention_ms) => deletable
            .iter()
            .take_while(|s| now_ms.saturating_sub(s.timestamp_ms) > retention_ms)
            .count(),
        None => 0,
    };
    let by_size = match limits.retention_bytes {
        Some(retention_bytes) => {
            let mut total: u64 = segments.iter().map(|s| s.size_bytes).sum();
            let mut count = 0;
            for s in deletable {
                if total <= retention_bytes {
                    break;
                }
                total -= s.size_bytes;
                count += 1;
            }
            count
        }
        None => 0,
    };
    let count = by_age.max(by_size);
    assert!(count < segments.len(), "retention must leave the active segment");
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(list: &[(i64, u64, i64)]) -> Vec<SegmentFacts> {
        list.iter()
            .map(|&(base, size_bytes, timestamp_ms)| SegmentFacts {
                base_offset: Offset(base),
                size_bytes,
                timestamp_ms,
            })
            .collect()
    }

    const NONE: RetentionLimits = RetentionLimits { retention_ms: None, retention_bytes: None };

    #[test]
    fn nothing_is_deleted_without_limits() {
        let segments = facts(&[(0, 100, 0), (10, 100, 0), (20, 100, 0)]);
        assert_eq!(segments_to_delete(&segments, i64::MAX, NONE), 0);
    }

    #[test]
    fn age_deletes_the_old_prefix_but_never_the_active_segment() {
        let segments = facts(&[(0, 100, 1000), (10, 100, 2000), (20, 100, 3000), (30, 100, 500)]);
        let limits = RetentionLimits { retention_ms: Some(1000), ..NONE };
        assert_eq!(
            segments_to_delete(&segments, 2000, limits),
            0,
            "exactly the retention age stays"
        );
        assert_eq!(segments_to_delete(&segments, 2001, limits), 1);
        assert_eq!(segments_to_delete(&segments, 3500, limits), 2);
        // The active segment (timestamp 500) stays whatever its age.
        assert_eq!(segments_to_delete(&segments, 1_000_000, limits), 3);
    }

    #[test]
    fn a_young_segment_stops_age_deletion() {
        let segments = facts(&[(0, 100, 1000), (10, 100, 9000), (20, 100, 1000), (30, 100, 0)]);
        let limits = RetentionLimits { retention_ms: Some(1000), ..NONE };
        assert_eq!(segments_to_delete(&segments, 5000, limits), 1);
    }

    #[test]
    fn size_deletes_oldest_while_the_log_is_too_big() {
        let segments = facts(&[(0, 100, 0), (10, 100, 0), (20, 100, 0), (30, 50, 0)]);
        let limit = |bytes| RetentionLimits { retention_bytes: Some(bytes), ..NONE };
        assert_eq!(segments_to_delete(&segments, 0, limit(350)), 0);
        assert_eq!(segments_to_delete(&segments, 0, limit(349)), 1);
        assert_eq!(segments_to_delete(&segments, 0, limit(250)), 1);
        assert_eq!(segments_to_delete(&segments, 0, limit(150)), 2);
        assert_eq!(segments_to_delete(&segments, 0, limit(0)), 3, "never the active segment");
    }

    #[test]
    fn the_larger_prefix_of_age_and_size_wins() {
        let segments = facts(&[(0, 100, 0), (10, 100, 5000), (20, 100, 5000), (30, 100, 5000)]);
        let limits = RetentionLimits { retention_ms: Some(1000), retention_bytes: Some(150) };
        assert_eq!(segments_to_delete(&segments, 5500, limits), 3);
        let limits = RetentionLimits { retention_ms: Some(1000), retention_bytes: Some(10_000) };
        assert_eq!(segments_to_delete(&segments, 5500, limits), 1);
    }

    #[test]
    fn a_single_active_segment_is_never_deleted() {
        let segments = facts(&[(0, 1 << 30, 0)]);
        let limits = RetentionLimits { retention_ms: Some(0), retention_bytes: Some(0) };
        assert_eq!(segments_to_delete(&segments, i64::MAX, limits), 0);
    }
}
