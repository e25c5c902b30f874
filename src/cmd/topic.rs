//! `xo topic create|list|describe|delete`: topics, through the coordinator.

use xo_client::{NewTopic, TopicSettings, admin::TOPIC_PARTITIONS_MAX};
use xo_proto::coordinator::ErrorCode as CoordinatorCode;

use super::client::{ClusterArgs, describe_topic, explain, print_table, print_text};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a topic; the coordinator spreads its partitions over the
    /// partition servers.
    Create(CreateArgs),
    /// List the topics (internal ones such as __consumer_offsets left out).
    List(ListArgs),
    /// Show a topic's settings, and where each partition lives with its offsets.
    Describe(DescribeArgs),
    /// Delete a topic and all its data.
    Delete(DeleteArgs),
}

#[derive(clap::Args)]
struct CreateArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Name of the topic to create.
    name: String,
    /// Number of partitions (1 to 10000); records of one key always go to the same one.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(TOPIC_PARTITIONS_MAX)))]
    partitions: u32,
    /// Keep only the latest record of each key (a compacted topic) instead
    /// of deleting old segments by time or size.
    #[arg(long)]
    compact: bool,
    /// Delete segments once all their records are older than this many
    /// milliseconds (default: keep forever).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(i64).range(1..))]
    retention_ms: Option<i64>,
    /// Delete the oldest segments while a partition is larger than this many
    /// bytes (default: no limit).
    #[arg(long, value_name = "B", value_parser = clap::value_parser!(i64).range(1..))]
    retention_bytes: Option<i64>,
}

#[derive(clap::Args)]
struct ListArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(clap::Args)]
struct DescribeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Name of the topic to describe.
    name: String,
}

#[derive(clap::Args)]
struct DeleteArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Name of the topic to delete.
    name: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Create(args) => create(args).await,
        Command::List(args) => list(args).await,
        Command::Describe(args) => describe(args).await,
        Command::Delete(args) => delete(args).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin().await?;
    let topic = NewTopic {
        name: args.name.clone(),
        partitions: args.partitions,
        settings: TopicSettings {
            compact: args.compact,
            retention_ms: args.retention_ms,
            retention_bytes: args.retention_bytes,
            segment_bytes: None,
        },
    };
    match admin.create_topic(topic).await {
        Ok(created) => print_text(&format!(
            "created topic {} with {} partition{}\n",
            created.name,
            created.partitions.len(),
            plural(created.partitions.len())
        )),
        Err(e) if e.coordinator_code() == Some(CoordinatorCode::TopicAlreadyExists) => {
            anyhow::bail!("topic {:?} already exists", args.name)
        }
        Err(e) => Err(explain(&e)),
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin().await?;
    let names = admin.list_topics().await.map_err(|e| explain(&e))?;
    let mut text = String::new();
    for name in names {
        text.push_str(&name);
        text.push('\n');
    }
    print_text(&text)
}

async fn describe(args: DescribeArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin().await?;
    let topic = describe_topic(&admin, &args.name).await?;
    let s = &topic.settings;
    let retention_ms = s.retention_ms.map_or("forever".into(), |ms| format!("{ms} ms"));
    let retention_bytes = s.retention_bytes.map_or("no limit".into(), |b| format!("{b} bytes"));
    let mut header = format!(
        "topic {}: {} partition{}, cleanup {}, retention {retention_ms}, size limit {retention_bytes}",
        topic.name,
        topic.partitions.len(),
        plural(topic.partitions.len()),
        if s.compact { "compact" } else { "delete" },
    );
    if topic.internal {
        header.push_str(", internal");
    }
    header.push('\n');
    print_text(&header)?;
    let mut rows = Vec::with_capacity(topic.partitions.len());
    for p in &topic.partitions {
        let offsets =
            admin.partition_offsets(&topic.name, p.partition).await.map_err(|e| explain(&e))?;
        rows.push(vec![
            p.partition.to_string(),
            p.server_id.clone(),
            p.address.clone(),
            offsets.log_start_offset.0.to_string(),
            offsets.high_watermark.0.to_string(),
            offsets.last_stable_offset.0.to_string(),
        ]);
    }
    print_table(
        &["PARTITION", "SERVER", "ADDRESS", "LOG START", "HIGH WATERMARK", "LAST STABLE"],
        &rows,
    )
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin().await?;
    // Asked first, so that an unknown name reads as such whatever the
    // coordinator's DeleteTopic answers for it.
    describe_topic(&admin, &args.name).await?;
    admin.delete_topic(&args.name).await.map_err(|e| explain(&e))?;
    print_text(&format!("deleted topic {}\n", args.name))
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
