//! `xo producers describe TOPIC PARTITION`: the producer state a partition
//! keeps for deduplication (KIP-664's DescribeProducers).

use super::client::{ClusterArgs, describe_topic, explain, format_time_ms, print_table};
use super::topic::plural;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Show the producers a partition remembers: id, epoch, last sequence,
    /// last write, and where an open transaction of theirs starts.
    Describe(DescribeArgs),
}

#[derive(clap::Args)]
struct DescribeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Topic of the partition.
    topic: String,
    /// Partition number (from 0).
    partition: u32,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Describe(args) => describe(args).await,
    }
}

async fn describe(args: DescribeArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin().await?;
    let topic = describe_topic(&admin, &args.topic).await?;
    let partitions = topic.partitions.len();
    if args.partition as usize >= partitions {
        anyhow::bail!(
            "topic {:?} has {partitions} partition{}: PARTITION must be 0 to {}",
            args.topic,
            plural(partitions),
            partitions.saturating_sub(1)
        );
    }
    let producers =
        admin.describe_producers(&args.topic, args.partition).await.map_err(|e| explain(&e))?;
    let rows: Vec<Vec<String>> = producers
        .iter()
        .map(|p| {
            vec![
                p.producer_id.0.to_string(),
                p.producer_epoch.0.to_string(),
                p.last_sequence.0.to_string(),
                format_time_ms(p.last_timestamp_ms),
                p.current_txn_start_offset.map_or("-".into(), |o| o.0.to_string()),
            ]
        })
        .collect();
    print_table(
        &["PRODUCER ID", "EPOCH", "LAST SEQUENCE", "LAST WRITE", "OPEN TXN START OFFSET"],
        &rows,
    )
}
