//! The exactly-once pipeline: read records from an input topic as a member
//! of a consumer group (read_committed), transform each one, and write the
//! results to an output topic in a transaction that also carries the
//! consumed offsets. The output records and the input progress become
//! visible together or not at all, so each input record is reflected in
//! the output exactly once — across crashes, restarts and rebalances.
//!
//! ```text
//! cargo run --release -- dev                       # in one terminal
//! cargo run -p xo-client --example consume_transform_produce -- \
//!     127.0.0.1:7070 input output uppercase 0     # bootstrap, topics, group, instance
//! ```
//!
//! Run several instances with different instance numbers: the group spreads
//! the input partitions over them. Restarting an instance with the same
//! number fences its predecessor (same transactional id).

use std::time::Duration;

use xo_client::{
    ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel, OffsetReset,
    ProducerConfig, ProducerRecord, Rebalance, TransactionalProducer,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let (bootstrap, input, output) = (arg(0, "127.0.0.1:7070"), arg(1, "input"), arg(2, "output"));
    let (group, instance) = (arg(3, "uppercase"), arg(4, "0"));

    let client = ClientConfig::new(&bootstrap);
    let mut consumer_config = ConsumerConfig::new(client.clone()).group(&group);
    // Read committed (the default): never see the output of a transaction
    // that may still abort, when the input is itself written transactionally.
    consumer_config.isolation = IsolationLevel::ReadCommitted;
    consumer_config.offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(consumer_config)?;
    consumer.subscribe(&[input.as_str()], &group)?;
    consumer.set_rebalance_listener(|change| match change {
        Rebalance::Revoked(partitions) => eprintln!("revoked {partitions:?}"),
        Rebalance::Assigned(partitions) => eprintln!("assigned {partitions:?}"),
    });

    // A transactional id that is stable across restarts of this instance:
    // `init_transactions` fences any zombie of it and finishes (aborts) what
    // it left open.
    let transactional_id = format!("{group}-{instance}");
    let producer = TransactionalProducer::new(ProducerConfig::new(client), &transactional_id)?;
    producer.init_transactions().await?;
    eprintln!("pipeline {transactional_id}: {input} → {output}");

    loop {
        let records = tokio::select! {
            records = consumer.poll(Duration::from_secs(1)) => records?,
            _ = tokio::signal::ctrl_c() => break,
        };
        if records.is_empty() {
            continue;
        }
        match transform_in_transaction(&producer, &consumer, &records, &output).await {
            Ok(()) => eprintln!("committed {} records", records.len()),
            Err(e) if e.is_abortable() => {
                // Nothing of this attempt becomes visible; redo it from the
                // group's committed offsets.
                eprintln!("aborting: {e}");
                producer.abort_transaction().await?;
                consumer.seek_to_committed();
            }
            // Fatal (e.g. fenced: a newer instance took our transactional
            // id) or a retriable error that outlasted its deadline: stop;
            // a restart resumes from the committed offsets.
            Err(e) => return Err(e.into()),
        }
    }
    producer.close().await?;
    consumer.close().await?;
    Ok(())
}

/// One transaction: the transformed records and the offsets after the
/// input records they came from.
async fn transform_in_transaction(
    producer: &TransactionalProducer,
    consumer: &Consumer,
    records: &[ConsumerRecord],
    output: &str,
) -> xo_client::Result<()> {
    producer.begin_transaction()?;
    let transformed: Vec<Vec<u8>> = records
        .iter()
        .map(|r| r.value.as_deref().unwrap_or_default().to_ascii_uppercase())
        .collect();
    let acks: Vec<_> = records
        .iter()
        .zip(&transformed)
        .map(|(record, value)| {
            let mut out = ProducerRecord::new(output, value);
            out.key = record.key.as_deref();
            producer.send(out)
        })
        .collect();
    // Positions are the next offsets to read: exactly what the group must
    // resume from once this transaction is committed.
    producer.send_offsets_to_transaction(consumer.positions(), &consumer.group_metadata()).await?;
    producer.commit_transaction().await?;
    // Committed means every record was acknowledged; a failed one would
    // have made the commit fail as abortable.
    for ack in futures::future::join_all(acks).await {
        ack?;
    }
    Ok(())
}
