//! Append-path benchmark: 1 KiB records in 16 KiB and 1 MiB batches, with
//! fsync `never` and `always` (group commit), 8 appends in flight at once.
//! Criterion prints records/s and bytes/s for each case.
//!
//! Run: `cargo bench -p xo-partition-server --bench append`

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xo_partition_server::partition::{NoCoordinator, Partition, PartitionConfig};
use xo_partition_server::{FsyncPolicy, ServerConfig};
use xo_proto::batch::records::{BatchBuilder, BatchMeta};

const RECORD_BYTES: usize = 1024;
const IN_FLIGHT: usize = 8;

fn batch(bytes: usize) -> Bytes {
    let records = bytes / RECORD_BYTES;
    let mut builder = BatchBuilder::with_capacity(BatchMeta::plain(0), bytes + 1024);
    let value = vec![0x5au8; RECORD_BYTES];
    for i in 0..records {
        builder.push(i as i64, None, Some(&value), &[]);
    }
    builder.finish().unwrap()
}

fn bench_append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    for (fsync_name, fsync) in [("never", FsyncPolicy::Never), ("always", FsyncPolicy::Always)] {
        for (size_name, size) in [("16KiB", 16 * 1024), ("1MiB", 1024 * 1024)] {
            let dir = tempfile::tempdir().unwrap();
            let mut config = ServerConfig::new(dir.path().to_path_buf());
            config.fsync = fsync;
            config.segment_bytes_default = 256 << 20;
            let partition: Arc<Partition> = Partition::open(
                &config,
                "bench",
                0,
                PartitionConfig::default(),
                Arc::new(NoCoordinator),
            )
            .unwrap();
            let payload = batch(size);
            let records = (size / RECORD_BYTES * IN_FLIGHT) as u64;
            let mut group = c.benchmark_group(format!("append/fsync-{fsync_name}"));
            group.throughput(Throughput::ElementsAndBytes {
                elements: records,
                bytes: (payload.len() * IN_FLIGHT) as u64,
            });
            group.measurement_time(Duration::from_secs(5));
            group.sample_size(20);
            group.bench_function(size_name, |b| {
                b.to_async(&runtime).iter(|| {
                    let partition = partition.clone();
                    let payload = payload.clone();
                    async move {
                        let appends = (0..IN_FLIGHT).map(|_| partition.produce(payload.clone()));
                        for r in futures::future::join_all(appends).await {
                            r.unwrap();
                        }
                    }
                })
            });
            group.finish();
            println!(
                "append/fsync-{fsync_name}/{size_name}: {} fsyncs over the run",
                partition.fsync_count()
            );
        }
    }
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
