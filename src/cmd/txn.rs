//! `xo txn list|describe|abort|find-hanging`: transaction admin, through
//! the coordinator.

use std::time::Duration;

use xo_client::{ListTransactionsFilter, TransactionDescription};

use super::client::{ClusterArgs, explain, format_time_ms, print_table, print_text};

/// The coordinator's transaction state names (`TxnState::name`).
const STATES: [&str; 8] = [
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "PrepareEpochFence",
    "Dead",
];

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// List the transactional ids the coordinator knows, with their state.
    List(ListArgs),
    /// Show one transactional id: producer id, epoch, state, partitions, timing.
    Describe(IdArgs),
    /// Abort the open transaction of a transactional id; its producer is fenced.
    Abort(IdArgs),
    /// Find transactions that partitions hold open but the coordinator will
    /// not end by itself (they hold the last stable offset back).
    FindHanging(FindHangingArgs),
}

#[derive(clap::Args)]
struct ListArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Only transactions in this state (may be repeated).
    #[arg(long = "state", value_name = "S", ignore_case = true,
          value_parser = clap::builder::PossibleValuesParser::new(STATES))]
    states: Vec<String>,
    /// Only transactions open for at least this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    min_duration_ms: u64,
}

#[derive(clap::Args)]
struct IdArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The transactional id (as given to `xo produce --transactional-id`).
    id: String,
}

#[derive(clap::Args)]
struct FindHangingArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Only look at this topic's partitions (may be repeated; default: every topic).
    #[arg(long = "topic", value_name = "TOPIC")]
    topics: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::List(args) => list(args).await,
        Command::Describe(args) => describe(args).await,
        Command::Abort(args) => abort(args).await,
        Command::FindHanging(args) => find_hanging(args).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin().await?;
    let filter = ListTransactionsFilter {
        states: args.states,
        min_duration: Duration::from_millis(args.min_duration_ms),
    };
    let mut txns = admin.list_transactions(&filter).await.map_err(|e| explain(&e))?;
    txns.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    let rows: Vec<Vec<String>> = txns
        .iter()
        .map(|t| {
            vec![
                t.transactional_id.clone(),
                t.producer_id.0.to_string(),
                t.producer_epoch.0.to_string(),
                t.state.clone(),
                t.partitions.len().to_string(),
                open_for(t),
            ]
        })
        .collect();
    print_table(
        &["TRANSACTIONAL ID", "PRODUCER ID", "EPOCH", "STATE", "PARTITIONS", "OPEN FOR"],
        &rows,
    )
}

async fn describe(args: IdArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin().await?;
    let t = admin.describe_transaction(&args.id).await.map_err(|e| explain(&e))?;
    let partitions: Vec<String> = t.partitions.iter().map(ToString::to_string).collect();
    let rows = [
        ("transactional id", t.transactional_id.clone()),
        ("producer id", t.producer_id.0.to_string()),
        ("epoch", t.producer_epoch.0.to_string()),
        ("state", t.state.clone()),
        ("timeout", format!("{} ms", t.timeout.as_millis())),
        ("started", t.start_time_ms.map_or("-".into(), format_time_ms)),
        ("open for", open_for(&t)),
        ("last update", format_time_ms(t.last_update_ms)),
        ("partitions", if partitions.is_empty() { "-".into() } else { partitions.join(", ") }),
    ];
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 2;
    let mut text = String::new();
    for (name, value) in rows {
        text.push_str(&format!("{:<width$}{value}\n", format!("{name}:")));
    }
    print_text(&text)
}

async fn abort(args: IdArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin().await?;
    admin.abort_transaction(&args.id).await.map_err(|e| explain(&e))?;
    print_text(&format!("aborted the open transaction of {:?}\n", args.id))
}

async fn find_hanging(args: FindHangingArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin().await?;
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    for topic in &topics {
        super::client::describe_topic(&admin, topic).await?;
    }
    let hanging = admin.find_hanging_transactions(&topics).await.map_err(|e| explain(&e))?;
    let rows: Vec<Vec<String>> = hanging
        .iter()
        .map(|h| {
            vec![
                h.partition.to_string(),
                h.producer_id.0.to_string(),
                h.producer_epoch.0.to_string(),
                h.start_offset.0.to_string(),
                h.reason.clone(),
            ]
        })
        .collect();
    print_table(&["PARTITION", "PRODUCER ID", "EPOCH", "START OFFSET", "REASON"], &rows)
}

/// How long the transaction has been open, or "-" when none is.
fn open_for(t: &TransactionDescription) -> String {
    match t.start_time_ms {
        Some(start) if !t.partitions.is_empty() => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            format!("{} ms", now.saturating_sub(start).max(0))
        }
        _ => "-".into(),
    }
}
